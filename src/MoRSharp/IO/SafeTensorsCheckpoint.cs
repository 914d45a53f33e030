using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace MoRSharp.IO;

/// <summary>
/// A model's weights in the Hugging Face layout: one <c>model.safetensors</c>, or shards
/// <c>model-00001-of-0000N.safetensors</c> listed in <c>model.safetensors.index.json</c>
/// (<c>{"metadata": {"total_size": bytes}, "weight_map": {tensor: shard file}}</c>).
/// <para>Opening validates every file's header (<see cref="SafeTensorsFile"/>) and the index: the weight map is an object
/// of strings, shard names are plain file names in the same folder, every shard exists, every listed tensor is in the
/// shard the index names, no tensor is in two shards, and no shard holds a tensor the index does not list.</para>
/// </summary>
public sealed class SafeTensorsCheckpoint : IDisposable
{
    public const string SingleFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";
    /// <summary>Default shard size for <see cref="Write"/>: Hugging Face's <c>max_shard_size</c> default (5 GB).</summary>
    public const long DefaultMaxShardBytes = 5_000_000_000;

    private readonly List<SafeTensorsFile> files = [];
    private readonly Dictionary<string, SafeTensorsFile> owner = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SafeTensorInfo> tensors = new(StringComparer.Ordinal);

    /// <summary>The file or index this checkpoint was opened from (for messages).</summary>
    public string Source { get; }
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors => tensors;
    /// <summary>The shard files (one for a single-file checkpoint).</summary>
    public IReadOnlyList<string> Files => files.Select(f => f.Path).ToList();
    /// <summary><c>__metadata__</c> of the first file.</summary>
    public IReadOnlyDictionary<string, string> Metadata => files.Count > 0 ? files[0].Metadata : new Dictionary<string, string>();

    /// <summary>True when <paramref name="dir"/> holds <c>model.safetensors</c> or <c>model.safetensors.index.json</c>.</summary>
    public static bool ExistsIn(string dir) =>
        File.Exists(Path.Combine(dir, SingleFile)) || File.Exists(Path.Combine(dir, IndexFile));

    /// <summary>
    /// Opens a folder (its <c>model.safetensors</c>, else its index), a <c>.safetensors</c> file, or an index file.
    /// </summary>
    public static SafeTensorsCheckpoint Open(string path)
    {
        if (Directory.Exists(path))
        {
            string single = Path.Combine(path, SingleFile), index = Path.Combine(path, IndexFile);
            if (File.Exists(single)) return new SafeTensorsCheckpoint(single, isIndex: false);
            if (File.Exists(index)) return new SafeTensorsCheckpoint(index, isIndex: true);
            throw new FileNotFoundException($"{path}: no weights ({SingleFile} or {IndexFile})");
        }
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: weights file not found");
        return new SafeTensorsCheckpoint(path, isIndex: path.EndsWith(".json", StringComparison.OrdinalIgnoreCase));
    }

    private SafeTensorsCheckpoint(string path, bool isIndex)
    {
        Source = path;
        try
        {
            if (!isIndex)
            {
                var f = new SafeTensorsFile(path);
                files.Add(f);
                foreach (var name in f.Names) { tensors[name] = f.Tensors[name]; owner[name] = f; }
                return;
            }
            var weightMap = ReadIndex(path);
            string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
            var byShard = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
            foreach (var shard in weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
            {
                string shardPath = Path.Combine(dir, shard);
                if (!File.Exists(shardPath)) throw new SafeTensorsException($"{path}: shard '{shard}' listed in weight_map does not exist");
                var f = new SafeTensorsFile(shardPath);
                files.Add(f);
                byShard[shard] = f;
            }
            foreach (var (name, shard) in weightMap)
            {
                var f = byShard[shard];
                if (!f.Tensors.TryGetValue(name, out var info))
                    throw new SafeTensorsException($"{path}: weight_map puts tensor '{name}' in {shard}, but that shard has no such tensor");
                tensors[name] = info;
                owner[name] = f;
            }
            foreach (var f in files)
                foreach (var name in f.Names)
                    if (!owner.TryGetValue(name, out var o) || o != f)
                        throw new SafeTensorsException(owner.ContainsKey(name)
                            ? $"{f.Path}: tensor '{name}' is also in {owner[name].Path}; the index puts it there"
                            : $"{f.Path}: tensor '{name}' is not listed in {path}");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private static Dictionary<string, string> ReadIndex(string path)
    {
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new SafeTensorsException($"{path}: not valid JSON ({e.Message})"); }
        if (root is not JsonObject obj) throw new SafeTensorsException($"{path}: expected a JSON object with \"weight_map\"");
        if (obj["weight_map"] is not JsonObject map) throw new SafeTensorsException($"{path}: \"weight_map\" is missing or not an object");
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, value) in map)
        {
            if (value is not JsonValue v || !v.TryGetValue(out string? shard) || string.IsNullOrEmpty(shard))
                throw new SafeTensorsException($"{path}: weight_map['{name}'] must be a shard file name");
            if (shard != Path.GetFileName(shard) || shard is "." or "..")
                throw new SafeTensorsException($"{path}: weight_map['{name}'] = '{shard}' is not a plain file name in the same folder");
            result[name] = shard;
        }
        if (result.Count == 0) throw new SafeTensorsException($"{path}: weight_map is empty");
        return result;
    }

    /// <summary>Reads one tensor (stored dtype).</summary>
    public Tensor Read(string name) =>
        owner.TryGetValue(name, out var f) ? f.Read(name) : throw new SafeTensorsException($"{Source}: no tensor named '{name}'");

    /// <summary>Reads one tensor converted to <paramref name="dtype"/>.</summary>
    public Tensor Read(string name, ScalarType dtype) =>
        owner.TryGetValue(name, out var f) ? f.Read(name, dtype) : throw new SafeTensorsException($"{Source}: no tensor named '{name}'");

    /// <summary>The file holding <paramref name="name"/>.</summary>
    public string FileOf(string name) => owner[name].Path;

    public void Dispose()
    {
        foreach (var f in files) f.Dispose();
        files.Clear();
    }

    /// <summary>
    /// Writes tensors into <paramref name="dir"/> the way Hugging Face's <c>save_pretrained</c> does: one
    /// <c>model.safetensors</c> when the data fits in <paramref name="maxShardBytes"/>, else shards of at most that size
    /// (a tensor larger than the limit gets a shard of its own) plus <c>model.safetensors.index.json</c>. Every file is
    /// written atomically; the index (or single file) last, and weight files of an earlier save are removed, so a reader
    /// never sees a mix of old and new.
    /// </summary>
    /// <returns>The files written (weights first, the index last).</returns>
    public static IReadOnlyList<string> Write(string dir, IReadOnlyList<(string name, Tensor tensor)> tensors, ScalarType? dtype = null,
        long maxShardBytes = DefaultMaxShardBytes, IReadOnlyDictionary<string, string>? metadata = null)
    {
        if (maxShardBytes < 1) throw new ArgumentException("the shard size must be positive");
        Directory.CreateDirectory(dir);
        metadata ??= new Dictionary<string, string> { ["format"] = "pt" };
        var shards = new List<List<(string, Tensor)>> { new() };
        long current = 0, total = 0;
        foreach (var item in tensors)
        {
            long bytes = SafeTensorsFile.DataBytes(item.tensor, dtype);
            if (current > 0 && current + bytes > maxShardBytes) { shards.Add([]); current = 0; }
            shards[^1].Add(item);
            current += bytes;
            total += bytes;
        }
        var stale = Directory.GetFiles(dir, "model-*-of-*.safetensors").Select(Path.GetFileName).ToHashSet(StringComparer.Ordinal);
        var written = new List<string>();
        if (shards.Count == 1)
        {
            string single = Path.Combine(dir, SingleFile);
            SafeTensorsFile.Save(single, shards[0], metadata, dtype);
            written.Add(single);
            DeleteIfExists(Path.Combine(dir, IndexFile));
        }
        else
        {
            var weightMap = new JsonObject();
            for (int i = 0; i < shards.Count; i++)
            {
                string name = string.Format(CultureInfo.InvariantCulture, "model-{0:D5}-of-{1:D5}.safetensors", i + 1, shards.Count);
                stale.Remove(name);
                SafeTensorsFile.Save(Path.Combine(dir, name), shards[i], metadata, dtype);
                written.Add(Path.Combine(dir, name));
                foreach (var (tensor, _) in shards[i]) weightMap[tensor] = name;
            }
            var sorted = new JsonObject();
            foreach (var kv in weightMap.OrderBy(kv => kv.Key, StringComparer.Ordinal)) sorted[kv.Key] = kv.Value!.GetValue<string>();
            var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = total }, ["weight_map"] = sorted };
            string indexPath = Path.Combine(dir, IndexFile);
            AtomicText(indexPath, index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            written.Add(indexPath);
            DeleteIfExists(Path.Combine(dir, SingleFile));
        }
        foreach (var old in stale) DeleteIfExists(Path.Combine(dir, old!));
        return written;
    }

    private static void DeleteIfExists(string path)
    {
        if (File.Exists(path)) File.Delete(path);
    }

    internal static void AtomicText(string path, string text)
    {
        string tmp = path + $".{Environment.ProcessId}.tmp";
        File.WriteAllText(tmp, text, new System.Text.UTF8Encoding(false));
        File.Move(tmp, path, overwrite: true);
    }
}
