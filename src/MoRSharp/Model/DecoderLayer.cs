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
        Tensor output;
        Tensor? k, v;
        if (torch.is_grad_enabled())
        {
            Tensor attn;
            (attn, k, v) = self_attn.Forward(input_layernorm.forward(h), inputs);
            var h1 = h + attn;
            output = h1 + mlp.forward(post_attention_layernorm.forward(h1));
        }
        else
        {
            // inference: the norms and residual adds go into the projections (fused decode kernels where the CPU has them)
            Tensor h1;
            (h1, k, v) = self_attn.Forward(h, inputs, input_layernorm, residual: h);
            output = mlp.ForwardResidual(h1, post_attention_layernorm);
        }
        output.MoveToOuterDisposeScope();
        k?.MoveToOuterDisposeScope();
        v?.MoveToOuterDisposeScope();
        return (output, k, v);
    }
}
