using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoRSharp.Model;

/// <summary>
/// What one attention call needs besides its input. The queries are the T tokens passed in (in position order);
/// <see cref="Cos"/>/<see cref="Sin"/> are their tables at their absolute positions.
/// </summary>
public sealed class AttentionInputs
{
    public required Tensor Cos;              // [B, 1, T, hd]
    public required Tensor Sin;              // [B, 1, T, hd]
    /// <summary>Boolean mask [B, 1, T, S] (true = may attend); null = causal among the T tokens themselves.</summary>
    public Tensor? Mask;
    /// <summary>Recursive KV sharing: keys/values [B, n_kv, S, hd] (post-RoPE) written by recursion 1; this call projects only Q.</summary>
    public (Tensor key, Tensor value)? SharedKv;
    /// <summary>Ask the call to hand back its own post-RoPE keys/values (recursion 1 under KV sharing).</summary>
    public bool CaptureKv;
    /// <summary>False for bidirectional encoders: with no <see cref="Mask"/>, every query attends to every key.</summary>
    public bool Causal = true;
}

/// <summary>Grouped-query causal self-attention with RoPE, no biases (HF <c>LlamaAttention</c>).</summary>
public sealed class Attention : nn.Module
{
    private readonly Linear q_proj;   // d → heads·hd
    private readonly Linear k_proj;   // d → kv_heads·hd
    private readonly Linear v_proj;   // d → kv_heads·hd
    private readonly Linear o_proj;   // heads·hd → d
    private readonly int numHeads, numKvHeads, headDim;

    public Attention(int hidden, int numHeads, int numKvHeads) : base(nameof(Attention))
    {
        this.numHeads = numHeads;
        this.numKvHeads = numKvHeads;
        headDim = hidden / numHeads;
        q_proj = nn.Linear(hidden, numHeads * headDim, hasBias: false);
        k_proj = nn.Linear(hidden, numKvHeads * headDim, hasBias: false);
        v_proj = nn.Linear(hidden, numKvHeads * headDim, hasBias: false);
        o_proj = nn.Linear(numHeads * headDim, hidden, hasBias: false);
        RegisterComponents();
    }

    /// <summary>x [B, T, d] → ([B, T, d], captured post-RoPE K/V [B, n_kv, T, hd] when asked).</summary>
    public (Tensor output, Tensor? key, Tensor? value) Forward(Tensor x, AttentionInputs inputs)
    {
        long b = x.shape[0], t = x.shape[1];
        using var scope = NewDisposeScope();
        var q = q_proj.forward(x).view(b, t, numHeads, headDim).transpose(1, 2);            // [B, H, T, hd]
        q = RotaryEmbedding.Apply(q, inputs.Cos, inputs.Sin);
        Tensor k, v;                                                                        // [B, n_kv, S, hd]
        if (inputs.SharedKv is { } shared)
        {
            (k, v) = shared;
        }
        else
        {
            k = k_proj.forward(x).view(b, t, numKvHeads, headDim).transpose(1, 2);
            k = RotaryEmbedding.Apply(k, inputs.Cos, inputs.Sin);
            v = v_proj.forward(x).view(b, t, numKvHeads, headDim).transpose(1, 2);
        }
        var kx = RepeatKv(k);                                                               // [B, H, S, hd]
        var vx = RepeatKv(v);
        var attn = inputs.Mask is null
            ? nn.functional.scaled_dot_product_attention(q, kx, vx, is_casual: inputs.Causal && t > 1)
            : nn.functional.scaled_dot_product_attention(q, kx, vx, attn_mask: inputs.Mask);
        var output = o_proj.forward(attn.transpose(1, 2).reshape(b, t, numHeads * headDim)); // [B, T, d]
        output.MoveToOuterDisposeScope();
        if (inputs.CaptureKv && inputs.SharedKv is null)
        {
            k.MoveToOuterDisposeScope();
            v.MoveToOuterDisposeScope();
            return (output, k, v);
        }
        return (output, null, null);
    }

    /// <summary>[B, n_kv, S, hd] → [B, H, S, hd]: query head j reads KV head j / (H / n_kv).</summary>
    private Tensor RepeatKv(Tensor kv)
    {
        if (numKvHeads == numHeads) return kv;
        int rep = numHeads / numKvHeads;
        long b = kv.shape[0], s = kv.shape[2];
        return kv.unsqueeze(2).expand(b, numKvHeads, rep, s, headDim).reshape(b, numHeads, s, headDim);
    }
}
