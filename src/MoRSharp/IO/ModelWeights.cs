using static TorchSharp.torch;

namespace MoRSharp.IO;

/// <summary>Copies a model's state (parameter names = HF keys) to and from safetensors files.</summary>
public static class ModelWeights
{
    /// <summary>
    /// Loads every entry of the model's state dict from <paramref name="path"/>, converting dtype as needed.
    /// A missing tensor, a shape mismatch or (with <paramref name="strict"/>) an unexpected tensor is an error naming it.
    /// </summary>
    public static void Load(nn.Module model, string path, bool strict = true)
    {
        using var file = new SafeTensorsFile(path);
        var state = model.state_dict();
        using var _ = torch.no_grad();
        foreach (var (name, target) in state)
        {
            if (!file.Tensors.TryGetValue(name, out var info))
                throw new SafeTensorsException($"{path}: missing tensor '{name}' (expected shape [{string.Join(", ", target.shape)}])");
            if (!info.Shape.SequenceEqual(target.shape))
                throw new SafeTensorsException($"{path}: tensor '{name}' has shape [{string.Join(", ", info.Shape)}], the model expects [{string.Join(", ", target.shape)}]");
            using var source = file.Read(name);
            target.copy_(source.to_type(target.dtype));
        }
        if (strict)
        {
            var extra = file.Tensors.Keys.Where(k => !state.ContainsKey(k)).ToList();
            if (extra.Count > 0)
                throw new SafeTensorsException($"{path}: unexpected tensor(s) not in the model: {string.Join(", ", extra.Take(5))}{(extra.Count > 5 ? ", …" : "")}");
        }
    }

    /// <summary>Saves the model's state dict (each shared layer once) atomically.</summary>
    public static void Save(nn.Module model, string path, IReadOnlyDictionary<string, string>? metadata = null) =>
        SafeTensorsFile.Save(path, model.state_dict().Select(kv => (kv.Key, kv.Value)), metadata ?? new Dictionary<string, string> { ["format"] = "pt" });
}
