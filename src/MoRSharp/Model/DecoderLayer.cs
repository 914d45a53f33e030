using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoRSharp.Model;

/// <summary>Pre-norm Llama decoder layer: h + attn(norm(h)), then h + mlp(norm(h)). Parameter names = HF keys.</summary>
public sealed class DecoderLayer : nn.Module
{
    private readonly Attention self_attn;
    private readonly SwiGluMlp mlp;
    private readonly RmsNorm input_layernorm;
    private readonly RmsNorm post_attention_layernorm;

    public DecoderLayer(int hidden, int intermediate, int heads, int kvHeads, double eps) : base(nameof(DecoderLayer))
    {
        self_attn = new Attention(hidden, heads, kvHeads);
        mlp = new SwiGluMlp(hidden, intermediate);
        input_layernorm = new RmsNorm(hidden, eps);
        post_attention_layernorm = new RmsNorm(hidden, eps);
        RegisterComponents();
    }

    /// <summary>h [B, T, d] → [B, T, d] (and this layer's K/V when <see cref="AttentionInputs.CaptureKv"/>).</summary>
    public (Tensor hidden, Tensor? key, Tensor? value) Forward(Tensor h, AttentionInputs inputs)
    {
        using var scope = NewDisposeScope();
        var (attn, k, v) = self_attn.Forward(input_layernorm.forward(h), inputs);
        Tensor output;
        if (torch.is_grad_enabled())
        {
            var h1 = h + attn;
            output = h1 + mlp.forward(post_attention_layernorm.forward(h1));
        }
        else
        {
            // inference: the residual adds reuse the fresh attention/MLP outputs in place (no autograd to protect; per-call cost counts when decoding)
            var h1 = attn.add_(h);
            output = mlp.forward(post_attention_layernorm.forward(h1)).add_(h1);
        }
        output.MoveToOuterDisposeScope();
        k?.MoveToOuterDisposeScope();
        v?.MoveToOuterDisposeScope();
        return (output, k, v);
    }
}
