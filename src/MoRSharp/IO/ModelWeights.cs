using static TorchSharp.torch;

namespace MoRSharp.IO;

/// <summary>Copies a model's state (parameter names = HF keys) to and from safetensors files or sharded checkpoints.</summary>
public static class ModelWeights
{
    /// <summary>
    /// Loads every entry of the model's state dict from <paramref name="path"/> (a <c>.safetensors</c> file, an index, or a
    /// folder with either), converting F16/BF16/F64 to the model's dtype. A missing tensor, a shape mismatch or (with
    /// <paramref name="strict"/>) an unexpected tensor is an error naming it.
    /// <para>Hugging Face variants accepted: keys without the <c>model.</c> prefix (a saved <c>LlamaModel</c>), the
    /// <c>rotary_emb.inv_freq</c> buffers of older checkpoints (recomputed, so ignored), and an <c>lm_head.weight</c> in a
    /// tied model when it equals the embedding.</para>
    /// </summary>
    public static void Load(nn.Module model, string path, bool strict = true)
    {
        using var file = SafeTensorsCheckpoint.Open(path);
        Load(model, file, strict);
    }

    public static void Load(nn.Module model, SafeTensorsCheckpoint file, bool strict = true)
    {
        string src = file.Source;
        var state = model.state_dict();
        var keyOf = FileKeys(file, state);
        using var _ = torch.no_grad();
        foreach (var (name, target) in state)
        {
            if (!keyOf.TryGetValue(name, out var key))
                throw new SafeTensorsException($"{src}: missing tensor '{name}' (expected shape [{string.Join(", ", target.shape)}])");
            var info = file.Tensors[key];
            if (!info.Shape.SequenceEqual(target.shape))
                throw new SafeTensorsException($"{src}: tensor '{key}' has shape [{string.Join(", ", info.Shape)}], the model expects [{string.Join(", ", target.shape)}] (does config.json match the weights?)");
            if (SafeTensorsFile.ScalarTypeOf(info.DType) is not { } stored || stored == ScalarType.Bool)
                throw new SafeTensorsException($"{src}: tensor '{key}' is {info.DType}; a model weight must be a number type");
            using var source = file.Read(key, target.dtype);
            target.copy_(source);
        }
        var used = keyOf.Values.ToHashSet(StringComparer.Ordinal);
        var extra = file.Tensors.Keys.Where(k => !used.Contains(k) && !k.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)).ToList();
        if (extra.Remove("lm_head.weight") && state.TryGetValue("model.embed_tokens.weight", out var embed) && !state.ContainsKey("lm_head.weight"))
        {
            using var head = file.Read("lm_head.weight", embed.dtype);
            if (!head.shape.SequenceEqual(embed.shape) || !head.eq(embed).all().item<bool>())
                throw new SafeTensorsException($"{src}: tie_word_embeddings is true but lm_head.weight differs from model.embed_tokens.weight " +
                                               "(set \"tie_word_embeddings\": false in config.json for an untied model)");
        }
        if (strict && extra.Count > 0)
            throw new SafeTensorsException($"{src}: unexpected tensor(s) not in the model: {string.Join(", ", extra.Take(5))}{(extra.Count > 5 ? ", …" : "")} " +
                                           "(does config.json match the weights?)");
    }

    /// <summary>Model key → file key: identical, or with the <c>model.</c> prefix dropped when the file has no prefixed keys.</summary>
    private static Dictionary<string, string> FileKeys(SafeTensorsCheckpoint file, IDictionary<string, Tensor> state)
    {
        bool unprefixed = !file.Tensors.Keys.Any(k => k.StartsWith("model.", StringComparison.Ordinal))
                          && file.Tensors.ContainsKey("embed_tokens.weight");
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var name in state.Keys)
        {
            string key = unprefixed && name.StartsWith("model.", StringComparison.Ordinal) ? name["model.".Length..] : name;
            if (file.Tensors.ContainsKey(key)) map[name] = key;
        }
        return map;
    }

    /// <summary>Saves the model's state dict (each shared layer once) atomically to one file.</summary>
    public static void Save(nn.Module model, string path, IReadOnlyDictionary<string, string>? metadata = null, ScalarType? dtype = null) =>
        SafeTensorsFile.Save(path, model.state_dict().Select(kv => (kv.Key, kv.Value)), metadata ?? new Dictionary<string, string> { ["format"] = "pt" }, dtype);

    /// <summary>Saves the model's state dict into <paramref name="dir"/> as <c>model.safetensors</c> or shards + index.</summary>
    public static IReadOnlyList<string> SaveFolder(nn.Module model, string dir, ScalarType? dtype = null, long maxShardBytes = SafeTensorsCheckpoint.DefaultMaxShardBytes) =>
        SafeTensorsCheckpoint.Write(dir, model.state_dict().Select(kv => (kv.Key, kv.Value)).ToList(), dtype, maxShardBytes);
}
