using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoRSharp.Data;
using MoRSharp.Data.Tokenizers;

namespace MoRSharp.Evaluation;

/// <summary>One token stream to score and the UTF-8 byte count of the text it encodes (for bits per byte).</summary>
public sealed record PerplexityInput(string Name, long[] Ids, long Bytes);

/// <summary>
/// What <c>mor eval --text</c> and <c>--tokens</c> score: a text file (one stream), a folder of <c>.txt</c> files (one stream
/// per file, in ordinal path order, recursively), or a token shard written by <c>mor data prepare</c> (the whole shard as one
/// stream, EOS tokens between documents included and scored, as in training).
/// </summary>
public static class PerplexityInputs
{
    /// <summary>The text files <paramref name="path"/> names: itself, or every <c>*.txt</c> below a folder.</summary>
    public static IReadOnlyList<string> TextFiles(string path)
    {
        if (File.Exists(path)) return [path];
        if (!Directory.Exists(path)) throw new FileNotFoundException($"--text: {path} does not exist", path);
        var files = Directory.EnumerateFiles(path, "*.txt", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();
        if (files.Count == 0) throw new DataException($"--text: {path} holds no .txt files");
        return files;
    }

    /// <summary>Each text file tokenized, read one at a time.</summary>
    public static IEnumerable<PerplexityInput> FromText(IEnumerable<string> files, ITokenizer tokenizer)
    {
        foreach (var file in files)
        {
            string text = File.ReadAllText(file, Encoding.UTF8);
            yield return new PerplexityInput(file, tokenizer.Encode(text).Select(i => (long)i).ToArray(), Encoding.UTF8.GetByteCount(text));
        }
    }

    /// <summary>
    /// A token shard: a <c>.bin</c> file, or a prepared folder (its <c>val.bin</c>, or <c>train.bin</c> with
    /// <paramref name="split"/> "train"). The shard must come from the model's tokenizer: checked against <c>meta.json</c> when it
    /// is there (name and vocabulary), else against the shard header (vocabulary and EOS). The byte count is the split's
    /// <c>bytes</c> in <c>meta.json</c>, else the UTF-8 length of the decoded documents (EOS excluded).
    /// </summary>
    public static PerplexityInput FromShard(string path, ITokenizer tokenizer, string split = "val")
    {
        if (split is not ("val" or "train")) throw new ArgumentException($"--split must be val or train, got '{split}'");
        string file = Directory.Exists(path) ? Path.Combine(path, split == "train" ? DataPreparer.TrainFile : DataPreparer.ValFile) : path;
        if (!File.Exists(file)) throw new FileNotFoundException($"--tokens: {file} does not exist", file);
        using var shard = new TokenShardReader(file);
        if (shard.Count > Array.MaxLength) throw new DataException($"{file}: {shard.Count:N0} tokens are more than one stream can hold");
        string metaPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(file))!, DataPreparer.MetaFile);
        long? metaBytes = null;
        if (File.Exists(metaPath)) metaBytes = CheckMeta(metaPath, Path.GetFileName(file), tokenizer);
        else if (shard.VocabSize != tokenizer.VocabSize || shard.EosId != tokenizer.EosId)
            throw new DataException($"{file}: the shard's vocabulary ({shard.VocabSize}, EOS {shard.EosId?.ToString() ?? "none"}) is not the model tokenizer's " +
                                    $"({tokenizer.Name}: {tokenizer.VocabSize}, EOS {tokenizer.EosId?.ToString() ?? "none"})");
        var ids = new long[shard.Count];
        shard.CopyTo(0, ids);
        return new PerplexityInput(file, ids, metaBytes ?? DecodedBytes(ids, tokenizer));
    }

    /// <summary>Checks meta.json's tokenizer and returns the bytes of the split stored in <paramref name="fileName"/> (null if not listed).</summary>
    private static long? CheckMeta(string metaPath, string fileName, ITokenizer tokenizer)
    {
        JsonNode? meta;
        try { meta = JsonNode.Parse(File.ReadAllText(metaPath)); }
        catch (JsonException e) { throw new DataException($"{metaPath}: not valid JSON ({e.Message})", e); }
        var tok = meta?["tokenizer"];
        string? name = tok?["name"]?.GetValue<string>();
        int? vocab = tok?["vocab_size"]?.GetValue<int>();
        if (name != tokenizer.Name || vocab != tokenizer.VocabSize)
            throw new DataException($"{metaPath}: the shards were tokenized with '{name}' ({vocab} tokens), the model uses '{tokenizer.Name}' " +
                                    $"({tokenizer.VocabSize} tokens); its scores would be meaningless");
        if (meta?["splits"] is JsonObject splits)
            foreach (var (_, s) in splits)
                if (s?["file"]?.GetValue<string>() == fileName && s["bytes"] is JsonValue b) return b.GetValue<long>();
        return null;
    }

    /// <summary>UTF-8 bytes of the text the ids decode to, document by document (EOS separates documents and is not text).</summary>
    private static long DecodedBytes(long[] ids, ITokenizer tokenizer)
    {
        long bytes = 0;
        var doc = new List<int>();
        void Flush()
        {
            if (doc.Count > 0) bytes += Encoding.UTF8.GetByteCount(tokenizer.Decode(doc.ToArray()));
            doc.Clear();
        }
        foreach (long id in ids)
        {
            if (id == tokenizer.EosId) Flush();
            else doc.Add((int)id);
        }
        Flush();
        return bytes;
    }
}
