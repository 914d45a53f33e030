using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using MoRSharp.Model;
using static TorchSharp.torch;

namespace MoRSharp.LlamaCpp;

/// <summary>
/// Writes a MoRSharp vanilla model as a GGUF v3 file (llama architecture, float32 tensors) that llama.cpp loads, so both
/// run the same weights. Tensor names and the q/k row order follow llama.cpp's convert_hf_to_gguf.py: llama.cpp rotates
/// interleaved pairs where HF Llama rotates halves, so q_proj and k_proj rows are permuted per head.
/// </summary>
public static class GgufWriter
{
    private enum ValueType : uint { UInt32 = 4, Int32 = 5, Float32 = 6, String = 8, Array = 9 }

    public static void Write(string path, MoRForCausalLM model, string gpt2TokenizerDir)
    {
        var c = model.Config;
        if (c.MoR is not null) throw new ArgumentException("gguf: only vanilla models have a llama.cpp counterpart");
        int hd = c.HiddenSize / c.NumAttentionHeads;
        var (tokens, merges) = Gpt2Vocabulary(gpt2TokenizerDir, c.VocabSize);
        var meta = new List<(string, object)>
        {
            ("general.architecture", "llama"), ("general.name", "morsharp-vanilla"),
            ("llama.context_length", (uint)c.MaxPositionEmbeddings), ("llama.embedding_length", (uint)c.HiddenSize),
            ("llama.block_count", (uint)c.NumHiddenLayers), ("llama.feed_forward_length", (uint)c.IntermediateSize),
            ("llama.attention.head_count", (uint)c.NumAttentionHeads), ("llama.attention.head_count_kv", (uint)c.NumKeyValueHeads),
            ("llama.rope.dimension_count", (uint)hd), ("llama.rope.freq_base", (float)c.RopeTheta),
            ("llama.attention.layer_norm_rms_epsilon", (float)c.RmsNormEps), ("llama.vocab_size", (uint)c.VocabSize),
            ("tokenizer.ggml.model", "gpt2"), ("tokenizer.ggml.pre", "gpt-2"), ("tokenizer.ggml.tokens", tokens),
            ("tokenizer.ggml.token_type", Enumerable.Repeat(1, tokens.Length).ToArray()), ("tokenizer.ggml.merges", merges),
            ("tokenizer.ggml.bos_token_id", 0u), ("tokenizer.ggml.eos_token_id", 0u),
        };
        using var scope = NewDisposeScope();   // the permuted and converted copies; the model's own tensors stay
        var sd = model.state_dict();
        Tensor W(string key) => sd.TryGetValue(key, out var t) ? t : throw new KeyNotFoundException($"gguf: the model has no '{key}'");
        var tensors = new List<(string name, Tensor t)> { ("token_embd.weight", W("model.embed_tokens.weight")), ("output_norm.weight", W("model.norm.weight")) };
        if (!c.TieWordEmbeddings) tensors.Add(("output.weight", W("lm_head.weight")));
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"model.layers.{l}.";
            tensors.Add(($"blk.{l}.attn_norm.weight", W(p + "input_layernorm.weight")));
            tensors.Add(($"blk.{l}.attn_q.weight", Permute(W(p + "self_attn.q_proj.weight"), c.NumAttentionHeads)));
            tensors.Add(($"blk.{l}.attn_k.weight", Permute(W(p + "self_attn.k_proj.weight"), c.NumKeyValueHeads)));
            tensors.Add(($"blk.{l}.attn_v.weight", W(p + "self_attn.v_proj.weight")));
            tensors.Add(($"blk.{l}.attn_output.weight", W(p + "self_attn.o_proj.weight")));
            tensors.Add(($"blk.{l}.ffn_norm.weight", W(p + "post_attention_layernorm.weight")));
            tensors.Add(($"blk.{l}.ffn_gate.weight", W(p + "mlp.gate_proj.weight")));
            tensors.Add(($"blk.{l}.ffn_up.weight", W(p + "mlp.up_proj.weight")));
            tensors.Add(($"blk.{l}.ffn_down.weight", W(p + "mlp.down_proj.weight")));
        }

        string tmp = path + ".tmp";
        using (var w = new BinaryWriter(new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20)))
        {
            w.Write("GGUF"u8); w.Write(3u);
            w.Write((ulong)tensors.Count); w.Write((ulong)meta.Count);
            foreach (var (k, v) in meta) { String(w, k); Value(w, v); }
            ulong offset = 0;
            foreach (var (name, t) in tensors)
            {
                String(w, name);
                w.Write((uint)t.shape.Length);
                for (int i = t.shape.Length - 1; i >= 0; i--) w.Write((ulong)t.shape[i]);   // ggml's ne[0] is the innermost dimension
                w.Write(0u);                                                                   // GGML_TYPE_F32
                w.Write(offset);
                offset += Aligned((ulong)t.numel() * 4);
            }
            Pad(w);
            foreach (var (_, t) in tensors)
            {
                w.Write(MemoryMarshal.AsBytes(t.to_type(ScalarType.Float32).contiguous().data<float>().ToArray().AsSpan()));
                Pad(w);
            }
        }
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>convert_hf_to_gguf.py's permute: [heads·hd, d] rows (h, half, i) → (h, i, half).</summary>
    private static Tensor Permute(Tensor w, int heads) =>
        w.reshape(heads, 2, w.shape[0] / heads / 2, w.shape[1]).transpose(1, 2).reshape(w.shape);

    /// <summary>GPT-2's byte-level BPE vocabulary cut to its first n ids (llama.cpp needs one to load a model; the benchmark feeds ids).</summary>
    private static (string[] tokens, string[] merges) Gpt2Vocabulary(string dir, int n)
    {
        var vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(Path.Combine(dir, "vocab.json")))
                    ?? throw new InvalidDataException($"{dir}/vocab.json: expected a JSON object of token → id");
        if (vocab.Count < n) throw new InvalidDataException($"{dir}/vocab.json: {vocab.Count} tokens, the model needs {n}");
        var tokens = new string[n];
        foreach (var (s, id) in vocab) if (id < n) tokens[id] = s;
        var kept = new HashSet<string>(tokens);
        var merges = File.ReadLines(Path.Combine(dir, "merges.txt"))
            .Where(l => l.Length > 0 && !l.StartsWith("#version", StringComparison.Ordinal))
            .Where(l => l.Split(' ') is [var a, var b] && kept.Contains(a) && kept.Contains(b) && kept.Contains(a + b))
            .ToArray();
        return (tokens, merges);
    }

    private static ulong Aligned(ulong n) => (n + 31) / 32 * 32;   // general.alignment's default
    private static void Pad(BinaryWriter w) { while (w.BaseStream.Position % 32 != 0) w.Write((byte)0); }
    private static void String(BinaryWriter w, string s) { var b = Encoding.UTF8.GetBytes(s); w.Write((ulong)b.Length); w.Write(b); }

    private static void Value(BinaryWriter w, object v)
    {
        switch (v)
        {
            case uint u: w.Write((uint)ValueType.UInt32); w.Write(u); break;
            case int i: w.Write((uint)ValueType.Int32); w.Write(i); break;
            case float f: w.Write((uint)ValueType.Float32); w.Write(f); break;
            case string s: w.Write((uint)ValueType.String); String(w, s); break;
            case string[] a: w.Write((uint)ValueType.Array); w.Write((uint)ValueType.String); w.Write((ulong)a.Length); foreach (var s in a) String(w, s); break;
            case int[] a: w.Write((uint)ValueType.Array); w.Write((uint)ValueType.Int32); w.Write((ulong)a.Length); foreach (var x in a) w.Write(x); break;
            default: throw new ArgumentException($"gguf: no value type for {v.GetType()}");
        }
    }
}
