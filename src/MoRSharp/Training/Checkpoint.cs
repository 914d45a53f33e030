using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using MoRSharp.Config;
using MoRSharp.IO;
using MoRSharp.Model;

namespace MoRSharp.Training;

/// <summary>Everything besides tensors that a resumed run needs to continue exactly.</summary>
public sealed class TrainerState
{
    [JsonPropertyName("step")] public long Step { get; set; }
    [JsonPropertyName("total_steps")] public long TotalSteps { get; set; }
    [JsonPropertyName("tokens_seen")] public long TokensSeen { get; set; }
    [JsonPropertyName("elapsed_seconds")] public double ElapsedSeconds { get; set; }
    [JsonPropertyName("options")] public TrainingOptions Options { get; set; } = new();
    /// <summary>The training data position (the batch source's own JSON state).</summary>
    [JsonPropertyName("data_state")] public JsonNode? DataState { get; set; }
    /// <summary>Version of this file's layout. (The token-choice loss-free bias is a model buffer, saved with the weights.)</summary>
    [JsonPropertyName("format")] public int Format { get; set; } = 1;
}

/// <summary>
/// Checkpoint folders <c>OUT/checkpoints/step-00000123/</c> holding <c>model.safetensors</c> (fp32 master weights, HF keys),
/// <c>config.json</c>, the tokenizer files, <c>optimizer.safetensors</c> (AdamW moments) and <c>trainer_state.json</c>.
/// A checkpoint is written into <c>step-….tmp</c> and renamed when complete, so a crash or a full disk never leaves a
/// half-written checkpoint under a final name, and the previous checkpoints stay intact. <c>latest</c> names the newest.
/// </summary>
public static class Checkpoint
{
    public const string ModelFile = "model.safetensors";
    public const string ConfigFile = "config.json";
    public const string OptimizerFile = "optimizer.safetensors";
    public const string StateFile = "trainer_state.json";
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public static string Folder(string outDir) => Path.Combine(outDir, "checkpoints");

    /// <summary>
    /// Writes model + config + tokenizer files into <paramref name="dir"/>: a model folder anyone can load, in the Hugging Face
    /// <c>LlamaForCausalLM</c> layout (F32 weights, HF config.json plus the "mor" block for MoR models; see <see cref="HfModelFolder"/>).
    /// </summary>
    public static void WriteModelFolder(string dir, MoRForCausalLM model, Action<string>? saveTokenizer)
    {
        Directory.CreateDirectory(dir);
        ModelWeights.Save(model, Path.Combine(dir, ModelFile));
        HfModelFolder.WriteConfig(Path.Combine(dir, ConfigFile), model.Config);
        saveTokenizer?.Invoke(dir);
    }

    /// <summary>
    /// Loads a model folder — one written by <see cref="WriteModelFolder"/> (or a checkpoint), or a Hugging Face Llama-family
    /// folder (single file or shards, F32/F16/BF16) — with its tokenizer.
    /// </summary>
    public static (MoRForCausalLM model, MoRSharp.Data.Tokenizers.ITokenizer tokenizer) LoadModelFolder(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"model folder {dir} does not exist");
        var model = HfModelFolder.LoadModel(dir);
        try
        {
            var tokenizer = MoRSharp.Data.Tokenizers.TokenizerFactory.Load(dir);
            if (tokenizer.VocabSize > model.Config.VocabSize)
                throw new ConfigException($"{dir}: the tokenizer has {tokenizer.VocabSize} tokens but the model's vocab_size is {model.Config.VocabSize}");
            return (model, tokenizer);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public static string Save(string outDir, MoRForCausalLM model, AdamW optimizer, TrainerState state, Action<string>? saveTokenizer, int keepLast) =>
        Save(outDir, dir => WriteModelFolder(dir, model, saveTokenizer), optimizer, state, keepLast);

    /// <summary>
    /// The same atomic checkpoint for any model: <paramref name="writeModelFolder"/> writes the model's files (weights,
    /// configs) into the folder it is given (the image/audio classifiers write their own config files).
    /// </summary>
    public static string Save(string outDir, Action<string> writeModelFolder, AdamW optimizer, TrainerState state, int keepLast)
    {
        string root = Folder(outDir);
        Directory.CreateDirectory(root);
        string name = $"step-{state.Step:D8}";
        string final = Path.Combine(root, name);
        string tmp = final + ".tmp";
        try
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
            writeModelFolder(tmp);
            SafeTensorsFile.Save(Path.Combine(tmp, OptimizerFile), optimizer.StateTensors());
            File.WriteAllText(Path.Combine(tmp, StateFile), JsonSerializer.Serialize(state, Json));
            if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
            Directory.Move(tmp, final);
            AtomicWrite(Path.Combine(root, "latest"), name);
        }
        catch (IOException e)
        {
            try { if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true); } catch (IOException) { }
            throw new IOException($"could not write checkpoint {final} ({e.Message}); the previous checkpoint is intact", e);
        }
        foreach (var old in List(outDir).SkipLast(keepLast))
            Directory.Delete(old, recursive: true);
        return final;
    }

    /// <summary>Complete checkpoint folders of a run, oldest first.</summary>
    public static IReadOnlyList<string> List(string outDir)
    {
        string root = Folder(outDir);
        if (!Directory.Exists(root)) return [];
        return Directory.GetDirectories(root, "step-*")
            .Where(d => !d.EndsWith(".tmp") && File.Exists(Path.Combine(d, StateFile)))
            .Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>A run folder (its newest checkpoint) or a checkpoint folder → the checkpoint folder.</summary>
    public static string Resolve(string path)
    {
        if (File.Exists(Path.Combine(path, StateFile))) return path;
        var all = List(path);
        if (all.Count == 0) throw new FileNotFoundException($"{path}: no checkpoint found (expected {StateFile} or checkpoints/step-*/)");
        return all[^1];
    }

    public static TrainerState LoadState(string checkpointDir)
    {
        string file = Path.Combine(checkpointDir, StateFile);
        try
        {
            return JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(file)) ?? throw new InvalidDataException($"{file}: empty");
        }
        catch (JsonException e) { throw new InvalidDataException($"{file}: not a valid trainer state ({e.Message})"); }
    }

    public static void AtomicWrite(string path, string text)
    {
        string tmp = path + ".tmp";
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }
}
