using System.Text.Json;
using System.Text.Json.Nodes;

namespace MoRSharp.Data.Tokenizers;

/// <summary>
/// Creates tokenizers: the built-in <see cref="Gpt2"/> and <see cref="Bytes"/>, and BPE tokenizers from Hugging Face files.
/// </summary>
/// <remarks>
/// None of them adds special tokens in <see cref="ITokenizer.Encode"/>: the data pipeline appends <see cref="ITokenizer.EosId"/>
/// after each document, and callers that need BOS prepend <see cref="ITokenizer.BosId"/> themselves.
/// </remarks>
public static class TokenizerFactory
{
    /// <summary>The file that <see cref="ITokenizer.SaveTo"/> writes and <see cref="Load"/> reads first.</summary>
    public const string InfoFileName = "tokenizer_info.json";

    private static readonly Lazy<Gpt2Tokenizer> _gpt2 = new(() => new Gpt2Tokenizer(), LazyThreadSafetyMode.ExecutionAndPublication);
    private static readonly ByteTokenizer _bytes = new();

    /// <summary>GPT-2's byte-level BPE (vocab 50257, EOS <c>&lt;|endoftext|&gt;</c> = 50256, no BOS); built in, no download.
    /// The instance is shared (it is immutable and thread-safe).</summary>
    public static ITokenizer Gpt2() => _gpt2.Value;

    /// <summary>The byte tokenizer: ids 0–255 are UTF-8 bytes, 256 is EOS; vocab 257, no BOS.</summary>
    public static ITokenizer Bytes() => _bytes;

    /// <summary>
    /// A BPE tokenizer from a Hugging Face <c>tokenizer.json</c> (byte-level BPE as GPT-2/SmolLM/Llama 3 use, or
    /// SentencePiece-style BPE with <c>byte_fallback</c> and a <c>▁</c> normalizer as Llama 2 uses). EOS/BOS come from
    /// <c>tokenizer_config.json</c> beside the file (<c>eos_token</c>, <c>bos_token</c>, <c>add_bos_token</c>), else from
    /// <c>special_tokens_map.json</c>, else EOS is the first of <c>&lt;|endoftext|&gt;</c>, <c>&lt;/s&gt;</c>,
    /// <c>&lt;|end_of_text|&gt;</c>, <c>&lt;eos&gt;</c>, … that the vocabulary has. See <see cref="BpeTokenizer"/> for what is supported.
    /// </summary>
    /// <param name="path">The <c>tokenizer.json</c> file (or a directory containing it).</param>
    /// <param name="name">The tokenizer's <see cref="ITokenizer.Name"/>; default: the name of the folder holding the file.</param>
    public static BpeTokenizer FromHuggingFaceJson(string path, string? name = null)
    {
        if (Directory.Exists(path)) path = Path.Combine(path, "tokenizer.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"tokenizer file not found: {path}", path);
        return BpeTokenizer.FromHuggingFaceJson(path, name ?? FolderName(path));
    }

    /// <summary>
    /// A GPT-2-style byte-level BPE from <c>vocab.json</c> ({token: id}) and <c>merges.txt</c> (one <c>a b</c> pair per line,
    /// rank order; a <c>#version</c> first line is skipped only if present). EOS is <c>&lt;|endoftext|&gt;</c> if the vocabulary has it.
    /// </summary>
    public static BpeTokenizer FromVocabMerges(string vocabJson, string mergesTxt, string? name = null)
    {
        if (!File.Exists(vocabJson)) throw new FileNotFoundException($"vocabulary file not found: {vocabJson}", vocabJson);
        if (!File.Exists(mergesTxt)) throw new FileNotFoundException($"merges file not found: {mergesTxt}", mergesTxt);
        return BpeTokenizer.FromVocabMerges(vocabJson, mergesTxt, name ?? FolderName(vocabJson));
    }

    /// <summary>
    /// Loads a tokenizer by name or path: <c>gpt2</c>, <c>bytes</c>, a <c>tokenizer.json</c> file, or a directory with
    /// (in this order of preference) MoRSharp's <c>tokenizer_info.json</c> (written by <see cref="ITokenizer.SaveTo"/>),
    /// a Hugging Face <c>tokenizer.json</c>, or <c>vocab.json</c> + <c>merges.txt</c>.
    /// </summary>
    /// <exception cref="FileNotFoundException">Nothing exists at <paramref name="nameOrPath"/>, or the directory has no tokenizer files.</exception>
    /// <exception cref="DataException">The files exist but cannot be used (the message names the file and the problem).</exception>
    public static ITokenizer Load(string nameOrPath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameOrPath);
        switch (nameOrPath)
        {
            case "gpt2": return Gpt2();
            case "bytes": return Bytes();
        }
        if (File.Exists(nameOrPath))
        {
            string file = Path.GetFileName(nameOrPath);
            if (file == InfoFileName) return LoadDirectory(Path.GetDirectoryName(Path.GetFullPath(nameOrPath))!);
            if (file.EndsWith(".json", StringComparison.OrdinalIgnoreCase) && file != "vocab.json") return FromHuggingFaceJson(nameOrPath);
            throw new DataException($"{nameOrPath}: not a tokenizer file (expected a tokenizer.json, or a directory with tokenizer files)");
        }
        if (Directory.Exists(nameOrPath)) return LoadDirectory(nameOrPath);
        throw new FileNotFoundException($"tokenizer '{nameOrPath}' not found: expected gpt2, bytes, a tokenizer.json file, or a directory " +
                                        $"with {InfoFileName}, tokenizer.json or vocab.json + merges.txt", nameOrPath);
    }

    private static ITokenizer LoadDirectory(string dir)
    {
        string info = Path.Combine(dir, InfoFileName);
        string hf = Path.Combine(dir, "tokenizer.json");
        string vocab = Path.Combine(dir, "vocab.json");
        string merges = Path.Combine(dir, "merges.txt");
        if (File.Exists(info))
        {
            JsonNode? node;
            try { node = JsonNode.Parse(File.ReadAllText(info)); }
            catch (JsonException e) { throw new DataException($"{info}: not valid JSON ({e.Message})", e); }
            string? kind = node?["kind"]?.GetValue<string>();
            string? name = node?["name"]?.GetValue<string>();
            return kind switch
            {
                "gpt2" => Gpt2(),
                "bytes" => Bytes(),
                "huggingface" => File.Exists(hf) ? FromHuggingFaceJson(hf, name)
                    : throw new DataException($"{info}: kind 'huggingface' but {hf} is missing"),
                "vocab_merges" => File.Exists(vocab) && File.Exists(merges) ? FromVocabMerges(vocab, merges, name)
                    : throw new DataException($"{info}: kind 'vocab_merges' but vocab.json or merges.txt is missing in {dir}"),
                null => throw new DataException($"{info}: no \"kind\" (expected gpt2, bytes, huggingface or vocab_merges)"),
                _ => throw new DataException($"{info}: unknown kind '{kind}' (expected gpt2, bytes, huggingface or vocab_merges)"),
            };
        }
        if (File.Exists(hf)) return FromHuggingFaceJson(hf);
        if (File.Exists(vocab) && File.Exists(merges)) return FromVocabMerges(vocab, merges);
        throw new FileNotFoundException($"{dir}: no tokenizer files (expected {InfoFileName}, tokenizer.json, or vocab.json + merges.txt)", dir);
    }

    /// <summary>Writes <c>tokenizer_info.json</c> = {"kind": …, "name": …} into <paramref name="directory"/> (created if missing).</summary>
    internal static void WriteInfo(string directory, string kind, string name)
    {
        Directory.CreateDirectory(directory);
        var node = new JsonObject { ["kind"] = kind, ["name"] = name };
        File.WriteAllText(Path.Combine(directory, InfoFileName), node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    private static string FolderName(string file)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(file));
        string name = dir is null ? "" : Path.GetFileName(dir);
        return name.Length > 0 ? name : Path.GetFileNameWithoutExtension(file);
    }
}
