using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace MoRSharp.Data.Tokenizers;

/// <summary>
/// A BPE tokenizer loaded from Hugging Face files, implemented here (merge algorithm included) so that it needs no native
/// library: <c>tokenizer.json</c> (<see cref="TokenizerFactory.FromHuggingFaceJson"/>) or GPT-2-style
/// <c>vocab.json</c> + <c>merges.txt</c> (<see cref="TokenizerFactory.FromVocabMerges"/>).
/// </summary>
/// <remarks>
/// <para>Supported <c>tokenizer.json</c> parts — model: <c>BPE</c> (<c>byte_fallback</c>, <c>unk_token</c>, <c>fuse_unk</c>,
/// <c>ignore_merges</c>, <c>continuing_subword_prefix</c>, <c>end_of_word_suffix</c>; merges as <c>"a b"</c> strings or
/// <c>["a", "b"]</c> pairs); normalizers: <c>Sequence</c>, <c>Prepend</c>, <c>Replace</c>, <c>NFC</c>/<c>NFD</c>/<c>NFKC</c>/<c>NFKD</c>,
/// <c>Lowercase</c>, <c>Strip</c>; pre-tokenizers: <c>Sequence</c>, <c>ByteLevel</c>, <c>Split</c>, <c>Digits</c>,
/// <c>Metaspace</c>, <c>Whitespace</c>, <c>WhitespaceSplit</c>, <c>Punctuation</c>; decoders: <c>Sequence</c>,
/// <c>ByteLevel</c>, <c>Replace</c>, <c>ByteFallback</c>, <c>Fuse</c>, <c>Strip</c>, <c>Metaspace</c>. Anything else is
/// rejected at load time with a <see cref="DataException"/> naming the file and the component. This covers GPT-2, SmolLM,
/// Llama 2 (SentencePiece-BPE with byte fallback) and Llama 3 / Qwen-style byte-level files.</para>
/// <para>The <c>post_processor</c> is ignored: <see cref="Encode"/> adds no BOS/EOS (see <see cref="ITokenizer"/>).
/// <c>tokenizer_config.json</c> (beside the file) gives <see cref="EosId"/>, <see cref="BosId"/>, <see cref="AddBosToken"/>
/// and <see cref="AddEosToken"/>; without it <c>special_tokens_map.json</c> is tried, then well-known EOS strings.</para>
/// <para>Added tokens marked <c>special</c> are never matched in the input text (a literal <c>&lt;/s&gt;</c> is encoded as
/// text). Non-special added tokens are matched in the raw text before normalization (their lstrip/rstrip/single_word
/// flags are not applied).</para>
/// </remarks>
public sealed class BpeTokenizer : ITokenizer
{
    private const int MaxCachedWordLength = 64;
    private const int MaxCacheEntries = 200_000;

    private readonly Dictionary<string, int> _vocab;
    private readonly string?[] _idToToken;
    private readonly Dictionary<long, (int Rank, int Id)> _merges;
    private readonly int? _unkId;
    private readonly bool _fuseUnk;
    private readonly int[]? _byteFallbackIds;
    private readonly string? _continuingPrefix;
    private readonly string? _endOfWordSuffix;
    private readonly bool _ignoreMerges;
    private readonly Normalizer? _normalizer;
    private readonly PreTokenizer? _preTokenizer;
    private readonly Decoder? _decoder;
    private readonly Dictionary<string, int> _addedAll = new(StringComparer.Ordinal);
    private readonly Regex? _addedTokenPattern;
    private readonly Dictionary<string, int> _addedNonSpecial;

    /// <summary>Every added token (special or not) by its text.</summary>
    public IReadOnlyDictionary<string, int> SpecialTokens => _addedAll;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly bool _splitAtMetaspace;
    private int _cacheCount;
    private const char Metaspace = '\u2581';

    public string Name { get; }
    public int VocabSize { get; }
    public int? EosId { get; }
    public int? BosId { get; }
    /// <summary><c>add_bos_token</c> from <c>tokenizer_config.json</c> (informational: <see cref="Encode"/> never adds BOS).</summary>
    public bool AddBosToken { get; }
    /// <summary><c>add_eos_token</c> from <c>tokenizer_config.json</c> (informational: <see cref="Encode"/> never adds EOS).</summary>
    public bool AddEosToken { get; }
    /// <summary><c>huggingface</c> (from tokenizer.json) or <c>vocab_merges</c> (from vocab.json + merges.txt).</summary>
    public string Kind { get; }
    /// <summary>The files this tokenizer was read from; <see cref="SaveTo"/> copies them.</summary>
    public IReadOnlyList<string> SourceFiles { get; }
    /// <summary>Number of merge rules.</summary>
    public int MergeCount => _merges.Count;

    private BpeTokenizer(string name, string kind, IReadOnlyList<string> sourceFiles, Dictionary<string, int> vocab,
        IReadOnlyList<(string A, string B)> merges, string? unkToken, bool fuseUnk, bool byteFallback, string? continuingPrefix,
        string? endOfWordSuffix, bool ignoreMerges, Normalizer? normalizer, PreTokenizer? preTokenizer, Decoder? decoder,
        IReadOnlyList<AddedToken> addedTokens, SpecialTokenConfig specials, string origin)
    {
        Name = name;
        Kind = kind;
        SourceFiles = sourceFiles;
        _vocab = vocab;
        _normalizer = normalizer;
        _preTokenizer = preTokenizer;
        _decoder = decoder;
        _fuseUnk = fuseUnk;
        _continuingPrefix = string.IsNullOrEmpty(continuingPrefix) ? null : continuingPrefix;
        _endOfWordSuffix = string.IsNullOrEmpty(endOfWordSuffix) ? null : endOfWordSuffix;
        _ignoreMerges = ignoreMerges;

        int maxId = -1;
        foreach (var id in vocab.Values)
        {
            if (id < 0) throw new DataException($"{origin}: negative token id {id} in the vocabulary");
            maxId = Math.Max(maxId, id);
        }
        foreach (var t in addedTokens) maxId = Math.Max(maxId, t.Id);
        if (maxId < 0) throw new DataException($"{origin}: the vocabulary is empty");
        VocabSize = maxId + 1;
        _idToToken = new string?[VocabSize];
        foreach (var (tok, id) in vocab) _idToToken[id] = tok;

        _addedNonSpecial = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var t in addedTokens)
        {
            if (t.Id < 0) throw new DataException($"{origin}: added token '{t.Content}' has negative id {t.Id}");
            _idToToken[t.Id] = t.Content;
            _addedAll[t.Content] = t.Id;
            if (!t.Special && t.Content.Length > 0) _addedNonSpecial[t.Content] = t.Id;
        }
        if (_addedNonSpecial.Count > 0)
        {
            var alternatives = _addedNonSpecial.Keys.OrderByDescending(k => k.Length).ThenBy(k => k, StringComparer.Ordinal).Select(Regex.Escape);
            _addedTokenPattern = new Regex(string.Join("|", alternatives), RegexOptions.CultureInvariant);
        }

        if (unkToken is not null)
        {
            if (!vocab.TryGetValue(unkToken, out int unk)) throw new DataException($"{origin}: unk_token '{unkToken}' is not in the vocabulary");
            _unkId = unk;
        }
        if (byteFallback)
        {
            _byteFallbackIds = new int[256];
            for (int b = 0; b < 256; b++)
                _byteFallbackIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out int bid) ? bid : -1;
        }

        _merges = new Dictionary<long, (int, int)>(merges.Count, PairComparer.Instance);
        int prefixLength = _continuingPrefix?.Length ?? 0;
        for (int rank = 0; rank < merges.Count; rank++)
        {
            var (a, b) = merges[rank];
            if (!vocab.TryGetValue(a, out int ia)) throw new DataException($"{origin}: merge {rank + 1} ('{a} {b}'): '{a}' is not in the vocabulary");
            if (!vocab.TryGetValue(b, out int ib)) throw new DataException($"{origin}: merge {rank + 1} ('{a} {b}'): '{b}' is not in the vocabulary");
            string merged = prefixLength > 0 && b.StartsWith(_continuingPrefix!, StringComparison.Ordinal) ? a + b[prefixLength..] : a + b;
            if (!vocab.TryGetValue(merged, out int im)) throw new DataException($"{origin}: merge {rank + 1} ('{a} {b}'): the result '{merged}' is not in the vocabulary");
            _merges.TryAdd(Key(ia, ib), (rank, im));
        }

        // SentencePiece-style vocabularies (Llama) have no pre-tokenizer, so a whole text is one BPE "word". If no token
        // has "▁" after another character, no merge can ever join across a "▁" that follows another character, so the
        // word can be cut before each such "▁" without changing the result; the pieces are short and cacheable.
        _splitAtMetaspace = _continuingPrefix is null && _endOfWordSuffix is null && !_ignoreMerges
            && vocab.Keys.Any(k => k.Length > 1 && k[0] == Metaspace)
            && !vocab.Keys.Concat(addedTokens.Select(t => t.Content)).Any(HasInnerMetaspace);

        int? Lookup(string? token)
        {
            if (token is null) return null;
            foreach (var t in addedTokens) if (t.Content == token) return t.Id;
            return vocab.TryGetValue(token, out int id) ? id : null;
        }
        EosId = Lookup(specials.Eos);
        BosId = Lookup(specials.Bos);
        AddBosToken = specials.AddBos && BosId is not null;
        AddEosToken = specials.AddEos && EosId is not null;
    }

    private static bool HasInnerMetaspace(string token)
    {
        for (int i = 1; i < token.Length; i++)
            if (token[i] == Metaspace && token[i - 1] != Metaspace) return true;
        return false;
    }

    private static long Key(int a, int b) => ((long)a << 32) | (uint)b;

    /// <summary>long's own hash is hi ^ lo, which collides for every (a, b) pair with the same XOR; mix the bits instead.</summary>
    private sealed class PairComparer : IEqualityComparer<long>
    {
        public static readonly PairComparer Instance = new();
        public bool Equals(long x, long y) => x == y;
        public int GetHashCode(long x) => (int)(SplitMix64.Mix((ulong)x) >> 32);
    }

    // ------------------------------------------------------------------ encoding

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length == 0) return [];
        var output = new List<int>(text.Length / 3 + 4);
        if (_addedTokenPattern is null)
        {
            EncodeSegment(text, atStart: true, output);
        }
        else
        {
            int pos = 0;
            foreach (Match m in _addedTokenPattern.Matches(text))
            {
                if (m.Index > pos) EncodeSegment(text[pos..m.Index], atStart: pos == 0, output);
                output.Add(_addedNonSpecial[m.Value]);
                pos = m.Index + m.Length;
            }
            if (pos < text.Length) EncodeSegment(text[pos..], atStart: pos == 0, output);
        }
        return output.ToArray();
    }

    private void EncodeSegment(string segment, bool atStart, List<int> output)
    {
        string normalized = _normalizer is null ? segment : _normalizer.Normalize(segment);
        if (normalized.Length == 0) return;
        if (_preTokenizer is null)
        {
            EncodeWord(normalized, output);
            return;
        }
        var pieces = new List<Piece> { new(normalized, atStart) };
        _preTokenizer.Apply(pieces);
        foreach (var p in pieces)
            if (p.Text.Length > 0) EncodeWord(p.Text, output);
    }

    private void EncodeWord(string word, List<int> output)
    {
        if (_splitAtMetaspace && word.Length > MaxCachedWordLength / 2)
        {
            int start = 0;
            for (int i = 1; i < word.Length; i++)
            {
                if (word[i] == Metaspace && word[i - 1] != Metaspace)
                {
                    EncodePiece(word[start..i], output);
                    start = i;
                }
            }
            EncodePiece(start == 0 ? word : word[start..], output);
            return;
        }
        EncodePiece(word, output);
    }

    private void EncodePiece(string word, List<int> output)
    {
        bool cacheable = word.Length <= MaxCachedWordLength;
        if (cacheable && _cache.TryGetValue(word, out var cached))
        {
            output.AddRange(cached);
            return;
        }
        var ids = Bpe(word);
        if (cacheable)
        {
            // (ConcurrentDictionary.Count takes every lock, up to 1024 of them: keep our own approximate count)
            if (Interlocked.Increment(ref _cacheCount) > MaxCacheEntries)
            {
                _cache.Clear();
                Interlocked.Exchange(ref _cacheCount, 0);
            }
            _cache.TryAdd(word, ids);
        }
        output.AddRange(ids);
    }

    /// <summary>Hugging Face's BPE on one pre-token: characters → vocabulary ids (byte fallback / unk), then merges applied
    /// lowest rank first (leftmost among equal ranks) with a priority queue, O(n log n) in the word length.</summary>
    private int[] Bpe(string word)
    {
        if (_ignoreMerges && _vocab.TryGetValue(word, out int whole)) return [whole];

        var symbols = new List<int>(word.Length);
        int pendingUnk = -1;
        int index = 0;
        int runeCount = 0;
        foreach (var _ in word.EnumerateRunes()) runeCount++;
        foreach (var rune in word.EnumerateRunes())
        {
            bool first = index == 0, last = index == runeCount - 1;
            index++;
            string s = rune.ToString();
            if (!first && _continuingPrefix is not null) s = _continuingPrefix + s;
            if (last && _endOfWordSuffix is not null) s += _endOfWordSuffix;
            if (_vocab.TryGetValue(s, out int id))
            {
                FlushUnk();
                symbols.Add(id);
                continue;
            }
            if (_byteFallbackIds is not null)
            {
                var bytes = Encoding.UTF8.GetBytes(s);
                bool all = true;
                foreach (var b in bytes) if (_byteFallbackIds[b] < 0) { all = false; break; }
                if (all)
                {
                    FlushUnk();
                    foreach (var b in bytes) symbols.Add(_byteFallbackIds[b]);
                    continue;
                }
            }
            if (_unkId is null)
                throw new DataException($"tokenizer {Name}: character U+{rune.Value:X4} is not in the vocabulary, and the tokenizer has neither byte fallback nor an unk token");
            if (pendingUnk >= 0 && !_fuseUnk) symbols.Add(pendingUnk);
            pendingUnk = _unkId.Value;
        }
        FlushUnk();

        int n = symbols.Count;
        if (n <= 1 || _merges.Count == 0) return symbols.ToArray();

        var ids = symbols.ToArray();
        var prev = new int[n];
        var next = new int[n];
        var alive = new bool[n];
        for (int i = 0; i < n; i++)
        {
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
            alive[i] = true;
        }
        var queue = new PriorityQueue<(int Pos, int NewId), long>();
        for (int i = 0; i + 1 < n; i++)
            if (_merges.TryGetValue(Key(ids[i], ids[i + 1]), out var m))
                queue.Enqueue((i, m.Id), ((long)m.Rank << 32) | (uint)i);

        while (queue.TryDequeue(out var top, out _))
        {
            int pos = top.Pos;
            if (!alive[pos]) continue;
            int right = next[pos];
            if (right < 0) continue;
            if (!_merges.TryGetValue(Key(ids[pos], ids[right]), out var m) || m.Id != top.NewId) continue;
            ids[pos] = m.Id;
            alive[right] = false;
            int after = next[right];
            next[pos] = after;
            if (after >= 0) prev[after] = pos;
            int before = prev[pos];
            if (before >= 0 && _merges.TryGetValue(Key(ids[before], ids[pos]), out var mp))
                queue.Enqueue((before, mp.Id), ((long)mp.Rank << 32) | (uint)before);
            if (after >= 0 && _merges.TryGetValue(Key(ids[pos], ids[after]), out var mn))
                queue.Enqueue((pos, mn.Id), ((long)mn.Rank << 32) | (uint)pos);
        }
        var result = new List<int>(n);
        for (int i = 0; i >= 0; i = next[i]) result.Add(ids[i]);
        return result.ToArray();

        void FlushUnk()
        {
            if (pendingUnk >= 0) symbols.Add(pendingUnk);
            pendingUnk = -1;
        }
    }

    // ------------------------------------------------------------------ decoding

    public string Decode(ReadOnlySpan<int> ids)
    {
        var tokens = new List<string>(ids.Length);
        foreach (int id in ids) tokens.Add(TokenText(id));
        return DecodeTokens(tokens, inSequence: false);
    }

    public string DecodeToken(int id) => DecodeTokens([TokenText(id)], inSequence: true);

    /// <summary>The vocabulary string of a token id (e.g. <c>Ġworld</c>, <c>▁Hello</c>, <c>&lt;0x0A&gt;</c>).</summary>
    public string TokenText(int id)
    {
        if ((uint)id >= (uint)VocabSize || _idToToken[id] is null)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is not in the {Name} vocabulary (size {VocabSize})");
        return _idToToken[id]!;
    }

    /// <summary>The id of a vocabulary string, or null.</summary>
    public int? TokenToId(string token) =>
        _addedAll.TryGetValue(token, out int a) ? a : _vocab.TryGetValue(token, out int v) ? v : null;

    private string DecodeTokens(List<string> tokens, bool inSequence)
    {
        if (tokens.Count == 0) return "";
        if (_decoder is null) return string.Join(" ", tokens);
        return string.Concat(_decoder.Decode(tokens, inSequence));
    }

    // ------------------------------------------------------------------ saving

    public void SaveTo(string directory)
    {
        Directory.CreateDirectory(directory);
        foreach (var src in SourceFiles)
        {
            string dst = Path.Combine(directory, Path.GetFileName(src));
            if (!string.Equals(Path.GetFullPath(src), Path.GetFullPath(dst), StringComparison.Ordinal))
                File.Copy(src, dst, overwrite: true);
        }
        TokenizerFactory.WriteInfo(directory, Kind, Name);
    }

    public override string ToString() => $"{Name} ({Kind} BPE, vocab {VocabSize}, {MergeCount} merges, eos {EosId?.ToString(CultureInfo.InvariantCulture) ?? "none"}, bos {BosId?.ToString(CultureInfo.InvariantCulture) ?? "none"})";

    // ------------------------------------------------------------------ loading

    internal sealed record AddedToken(int Id, string Content, bool Special);

    internal sealed record SpecialTokenConfig(string? Eos, string? Bos, bool AddBos, bool AddEos);

    /// <summary>GPT-2-style files: byte-level pre-tokenizer with GPT-2's pattern, byte-level decoder; EOS = <c>&lt;|endoftext|&gt;</c> if present.</summary>
    internal static BpeTokenizer FromVocabMerges(string vocabPath, string mergesPath, string name)
    {
        var vocab = ReadVocabJson(vocabPath);
        var merges = new List<(string, string)>();
        int lineNo = 0;
        foreach (var raw in File.ReadLines(mergesPath, Encoding.UTF8))
        {
            lineNo++;
            string line = raw.TrimEnd('\r');
            if (lineNo == 1 && line.StartsWith("#version", StringComparison.Ordinal)) continue;
            if (line.Length == 0) continue;
            int sp = line.IndexOf(' ');
            if (sp <= 0 || sp == line.Length - 1 || line.IndexOf(' ', sp + 1) >= 0)
                throw new DataException($"{mergesPath}:{lineNo}: expected two tokens separated by one space, got '{line}'");
            merges.Add((line[..sp], line[(sp + 1)..]));
        }
        string? eos = vocab.ContainsKey(Gpt2Tokenizer.EndOfTextString) ? Gpt2Tokenizer.EndOfTextString : null;
        var added = eos is null ? new List<AddedToken>() : [new AddedToken(vocab[eos], eos, true)];
        return new BpeTokenizer(name, "vocab_merges", [vocabPath, mergesPath], vocab, merges, unkToken: null, fuseUnk: false,
            byteFallback: false, continuingPrefix: null, endOfWordSuffix: null, ignoreMerges: false, normalizer: null,
            preTokenizer: new ByteLevelPre(addPrefixSpace: false, useRegex: true), decoder: new ByteLevelDecoder(), added,
            new SpecialTokenConfig(eos, null, false, false), origin: vocabPath);
    }

    private static Dictionary<string, int> ReadVocabJson(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            var vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(stream)
                        ?? throw new DataException($"{path}: expected a JSON object {{token: id}}");
            return vocab;
        }
        catch (JsonException e)
        {
            throw new DataException($"{path}: not a vocab.json object {{token: id}} ({e.Message})", e);
        }
    }

    internal static BpeTokenizer FromHuggingFaceJson(string path, string name)
    {
        var files = new List<string> { path };
        JsonDocument doc;
        try
        {
            using var stream = File.OpenRead(path);
            doc = JsonDocument.Parse(stream, new JsonDocumentOptions { AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new DataException($"{path}: not valid JSON ({e.Message})", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new DataException($"{path}: expected a JSON object");
            if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
                throw new DataException($"{path}: no \"model\" object");
            string? type = Str(model, "type");
            if (type is not null && type != "BPE")
                throw new DataException($"{path}: model type '{type}' is not supported (only BPE tokenizers can be loaded)");
            if (!model.TryGetProperty("vocab", out var vocabEl) || vocabEl.ValueKind != JsonValueKind.Object)
                throw new DataException($"{path}: model.vocab is missing or not an object");
            var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var p in vocabEl.EnumerateObject()) vocab[p.Name] = p.Value.GetInt32();
            var merges = new List<(string, string)>();
            if (model.TryGetProperty("merges", out var mergesEl) && mergesEl.ValueKind == JsonValueKind.Array)
            {
                int i = 0;
                foreach (var m in mergesEl.EnumerateArray())
                {
                    i++;
                    if (m.ValueKind == JsonValueKind.String)
                    {
                        var s = m.GetString()!;
                        int sp = s.IndexOf(' ');
                        if (sp <= 0 || s.IndexOf(' ', sp + 1) >= 0) throw new DataException($"{path}: model.merges[{i - 1}] '{s}' is not two tokens separated by one space");
                        merges.Add((s[..sp], s[(sp + 1)..]));
                    }
                    else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2)
                    {
                        merges.Add((m[0].GetString()!, m[1].GetString()!));
                    }
                    else throw new DataException($"{path}: model.merges[{i - 1}] is neither \"a b\" nor [\"a\", \"b\"]");
                }
            }
            if (Num(model, "dropout") is double dropout && dropout > 0)
                throw new DataException($"{path}: BPE dropout ({dropout}) is not supported");

            var added = new List<AddedToken>();
            if (root.TryGetProperty("added_tokens", out var addedEl) && addedEl.ValueKind == JsonValueKind.Array)
                foreach (var a in addedEl.EnumerateArray())
                    added.Add(new AddedToken(a.GetProperty("id").GetInt32(), a.GetProperty("content").GetString()!,
                        a.TryGetProperty("special", out var sp) && sp.ValueKind == JsonValueKind.True));

            var normalizer = root.TryGetProperty("normalizer", out var nEl) ? ParseNormalizer(nEl, path) : null;
            var pre = root.TryGetProperty("pre_tokenizer", out var pEl) ? ParsePreTokenizer(pEl, path) : null;
            var decoder = root.TryGetProperty("decoder", out var dEl) ? ParseDecoder(dEl, path) : null;

            string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
            var specials = ReadSpecialTokenConfig(dir, files, vocab, added);

            return new BpeTokenizer(name, "huggingface", files, vocab, merges, Str(model, "unk_token"),
                Bool(model, "fuse_unk"), Bool(model, "byte_fallback"), Str(model, "continuing_subword_prefix"),
                Str(model, "end_of_word_suffix"), Bool(model, "ignore_merges"), normalizer, pre, decoder, added, specials, path);
        }
    }

    private static readonly string[] WellKnownEos = ["<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eot_id|>", "<|im_end|>"];

    private static SpecialTokenConfig ReadSpecialTokenConfig(string dir, List<string> files, Dictionary<string, int> vocab, List<AddedToken> added)
    {
        string configPath = Path.Combine(dir, "tokenizer_config.json");
        string mapPath = Path.Combine(dir, "special_tokens_map.json");
        string? eos = null, bos = null;
        bool addBos = false, addEos = false;
        bool found = false;
        foreach (var p in new[] { configPath, mapPath })
        {
            if (!File.Exists(p)) continue;
            files.Add(p);
            JsonDocument d;
            try { d = JsonDocument.Parse(File.ReadAllBytes(p), new JsonDocumentOptions { AllowTrailingCommas = true }); }
            catch (JsonException e) { throw new DataException($"{p}: not valid JSON ({e.Message})", e); }
            using (d)
            {
                var r = d.RootElement;
                if (r.ValueKind != JsonValueKind.Object) continue;
                found = true;
                eos ??= TokenString(r, "eos_token");
                bos ??= TokenString(r, "bos_token");
                if (p == configPath)
                {
                    addBos = Bool(r, "add_bos_token");
                    addEos = Bool(r, "add_eos_token");
                }
            }
        }
        if (!found || eos is null)
        {
            foreach (var candidate in WellKnownEos)
            {
                if (added.Any(a => a.Content == candidate) || vocab.ContainsKey(candidate))
                {
                    eos ??= candidate;
                    break;
                }
            }
        }
        return new SpecialTokenConfig(eos, bos, addBos, addEos);
    }

    private static string? TokenString(JsonElement obj, string name)
    {
        if (!obj.TryGetProperty(name, out var v)) return null;
        return v.ValueKind switch
        {
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Object => Str(v, "content"),
            _ => null,
        };
    }

    private static string? Str(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static bool Bool(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.True;

    private static bool BoolOr(JsonElement obj, string name, bool fallback) =>
        obj.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.ValueKind == JsonValueKind.True : fallback;

    private static double? Num(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;

    private static int IntOr(JsonElement obj, string name, int fallback) =>
        obj.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : fallback;

    private static string Type(JsonElement el, string path, string what) =>
        Str(el, "type") ?? throw new DataException($"{path}: {what} without a \"type\"");

    /// <summary>A pattern object <c>{"String": s}</c> or <c>{"Regex": r}</c> as a .NET regex.</summary>
    private static Regex Pattern(JsonElement el, string path, string what)
    {
        if (el.ValueKind == JsonValueKind.String) return new Regex(Regex.Escape(el.GetString()!), RegexOptions.CultureInvariant);
        if (el.ValueKind == JsonValueKind.Object)
        {
            if (Str(el, "String") is string s) return new Regex(Regex.Escape(s), RegexOptions.CultureInvariant);
            if (Str(el, "Regex") is string r)
            {
                try { return new Regex(r, RegexOptions.CultureInvariant | RegexOptions.Compiled); }
                catch (ArgumentException e) { throw new DataException($"{path}: {what}: regex '{r}' is not supported by .NET ({e.Message})", e); }
            }
        }
        throw new DataException($"{path}: {what}: pattern is neither {{\"String\": …}} nor {{\"Regex\": …}}");
    }

    private static Normalizer? ParseNormalizer(JsonElement el, string path)
    {
        if (el.ValueKind == JsonValueKind.Null) return null;
        string type = Type(el, path, "normalizer");
        return type switch
        {
            "Sequence" => new SequenceNormalizer(el.GetProperty("normalizers").EnumerateArray().Select(e => ParseNormalizer(e, path)).OfType<Normalizer>().ToList()),
            "Prepend" => new PrependNormalizer(Str(el, "prepend") ?? ""),
            "Replace" => new ReplaceNormalizer(Pattern(el.GetProperty("pattern"), path, "Replace normalizer"), Str(el, "content") ?? ""),
            "NFC" => new UnicodeNormalizer(NormalizationForm.FormC),
            "NFD" => new UnicodeNormalizer(NormalizationForm.FormD),
            "NFKC" => new UnicodeNormalizer(NormalizationForm.FormKC),
            "NFKD" => new UnicodeNormalizer(NormalizationForm.FormKD),
            "Lowercase" => new LowercaseNormalizer(),
            "Strip" => new StripNormalizer(BoolOr(el, "strip_left", true), BoolOr(el, "strip_right", true)),
            _ => throw new DataException($"{path}: normalizer type '{type}' is not supported (supported: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip)"),
        };
    }

    private static PreTokenizer? ParsePreTokenizer(JsonElement el, string path)
    {
        if (el.ValueKind == JsonValueKind.Null) return null;
        string type = Type(el, path, "pre_tokenizer");
        switch (type)
        {
            case "Sequence":
                return new SequencePre(el.GetProperty("pretokenizers").EnumerateArray().Select(e => ParsePreTokenizer(e, path)).OfType<PreTokenizer>().ToList());
            case "ByteLevel":
                return new ByteLevelPre(Bool(el, "add_prefix_space"), BoolOr(el, "use_regex", true));
            case "Split":
            {
                string behavior = Str(el, "behavior") ?? "Isolated";
                if (behavior is not ("Removed" or "Isolated" or "MergedWithPrevious" or "MergedWithNext" or "Contiguous"))
                    throw new DataException($"{path}: Split pre-tokenizer behavior '{behavior}' is not supported");
                return new SplitPre(Pattern(el.GetProperty("pattern"), path, "Split pre-tokenizer"), behavior, Bool(el, "invert"));
            }
            case "Digits":
                return new DigitsPre(Bool(el, "individual_digits"));
            case "Metaspace":
            {
                string replacement = Str(el, "replacement") ?? "▁";
                string scheme = Str(el, "prepend_scheme") ?? (BoolOr(el, "add_prefix_space", true) ? "always" : "never");
                return new MetaspacePre(replacement, scheme, BoolOr(el, "split", true));
            }
            case "Whitespace":
                return new SplitPre(new Regex(@"\w+|[^\w\s]+", RegexOptions.CultureInvariant), "Removed", invert: true);
            case "WhitespaceSplit":
                return new SplitPre(new Regex(@"\s+", RegexOptions.CultureInvariant), "Removed", invert: false);
            case "Punctuation":
                return new SplitPre(new Regex(@"\p{P}", RegexOptions.CultureInvariant), Str(el, "behavior") ?? "Isolated", invert: false);
            default:
                throw new DataException($"{path}: pre_tokenizer type '{type}' is not supported (supported: Sequence, ByteLevel, Split, Digits, Metaspace, Whitespace, WhitespaceSplit, Punctuation)");
        }
    }

    private static Decoder? ParseDecoder(JsonElement el, string path)
    {
        if (el.ValueKind == JsonValueKind.Null) return null;
        string type = Type(el, path, "decoder");
        return type switch
        {
            "Sequence" => new SequenceDecoder(el.GetProperty("decoders").EnumerateArray().Select(e => ParseDecoder(e, path)).OfType<Decoder>().ToList()),
            "ByteLevel" => new ByteLevelDecoder(),
            "Replace" => new ReplaceDecoder(Pattern(el.GetProperty("pattern"), path, "Replace decoder"), Str(el, "content") ?? ""),
            "ByteFallback" => new ByteFallbackDecoder(),
            "Fuse" => new FuseDecoder(),
            "Strip" => new StripDecoder((Str(el, "content") ?? " ")[0], IntOr(el, "start", 0), IntOr(el, "stop", 0)),
            "Metaspace" => new MetaspaceDecoder(Str(el, "replacement") ?? "▁",
                (Str(el, "prepend_scheme") ?? (BoolOr(el, "add_prefix_space", true) ? "always" : "never")) != "never"),
            _ => throw new DataException($"{path}: decoder type '{type}' is not supported (supported: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace)"),
        };
    }

    // ------------------------------------------------------------------ components

    private abstract class Normalizer
    {
        public abstract string Normalize(string s);
    }

    private sealed class SequenceNormalizer(List<Normalizer> items) : Normalizer
    {
        public override string Normalize(string s)
        {
            foreach (var n in items) s = n.Normalize(s);
            return s;
        }
    }

    private sealed class PrependNormalizer(string prefix) : Normalizer
    {
        public override string Normalize(string s) => s.Length == 0 ? s : prefix + s;
    }

    private sealed class ReplaceNormalizer(Regex pattern, string content) : Normalizer
    {
        public override string Normalize(string s) => pattern.Replace(s, content.Replace("$", "$$"));
    }

    private sealed class UnicodeNormalizer(NormalizationForm form) : Normalizer
    {
        public override string Normalize(string s) => s.IsNormalized(form) ? s : s.Normalize(form);
    }

    private sealed class LowercaseNormalizer : Normalizer
    {
        public override string Normalize(string s) => s.ToLowerInvariant();
    }

    private sealed class StripNormalizer(bool left, bool right) : Normalizer
    {
        public override string Normalize(string s) => left && right ? s.Trim() : left ? s.TrimStart() : right ? s.TrimEnd() : s;
    }

    /// <summary>A pre-token; <see cref="AtStart"/> is true for the piece that begins the input text (Metaspace "first").</summary>
    private readonly record struct Piece(string Text, bool AtStart);

    private abstract class PreTokenizer
    {
        /// <summary>Splits every piece in place.</summary>
        public void Apply(List<Piece> pieces)
        {
            var result = new List<Piece>(pieces.Count * 2);
            foreach (var p in pieces) Split(p, result);
            pieces.Clear();
            pieces.AddRange(result);
        }

        protected abstract void Split(Piece piece, List<Piece> output);

        /// <summary>Splits <paramref name="text"/> at the matches of <paramref name="regex"/> with a Hugging Face delimiter behavior.</summary>
        protected static void SplitWith(Piece piece, Regex regex, string behavior, bool invert, List<Piece> output)
        {
            string text = piece.Text;
            var spans = new List<(int Start, int End, bool IsMatch)>();
            int pos = 0;
            for (var m = regex.Match(text); m.Success; m = m.NextMatch())
            {
                if (m.Length == 0) continue;
                if (m.Index > pos) spans.Add((pos, m.Index, invert));
                spans.Add((m.Index, m.Index + m.Length, !invert));
                pos = m.Index + m.Length;
            }
            if (pos < text.Length) spans.Add((pos, text.Length, invert));

            var parts = new List<(int Start, int End)>();
            switch (behavior)
            {
                case "Removed":
                    foreach (var s in spans) if (!s.IsMatch) parts.Add((s.Start, s.End));
                    break;
                case "Isolated":
                    foreach (var s in spans) parts.Add((s.Start, s.End));
                    break;
                case "MergedWithPrevious":
                    for (int i = 0; i < spans.Count; i++)
                    {
                        var s = spans[i];
                        if (s.IsMatch && i > 0 && !spans[i - 1].IsMatch) parts[^1] = (parts[^1].Start, s.End);
                        else parts.Add((s.Start, s.End));
                    }
                    break;
                case "MergedWithNext":
                {
                    int? pendingStart = null;
                    foreach (var s in spans)
                    {
                        if (s.IsMatch)
                        {
                            if (pendingStart is int ps) parts.Add((ps, s.Start));
                            pendingStart = s.Start;
                        }
                        else
                        {
                            parts.Add((pendingStart ?? s.Start, s.End));
                            pendingStart = null;
                        }
                    }
                    if (pendingStart is int last) parts.Add((last, text.Length));
                    break;
                }
                case "Contiguous":
                    for (int i = 0; i < spans.Count; i++)
                    {
                        var s = spans[i];
                        if (s.IsMatch && i > 0 && spans[i - 1].IsMatch && parts.Count > 0) parts[^1] = (parts[^1].Start, s.End);
                        else parts.Add((s.Start, s.End));
                    }
                    break;
            }
            bool first = true;
            foreach (var (start, end) in parts)
            {
                if (end > start) output.Add(new Piece(text[start..end], piece.AtStart && first && start == 0));
                first = false;
            }
        }
    }

    private sealed class SequencePre(List<PreTokenizer> items) : PreTokenizer
    {
        protected override void Split(Piece piece, List<Piece> output)
        {
            var pieces = new List<Piece> { piece };
            foreach (var p in items) p.Apply(pieces);
            output.AddRange(pieces);
        }
    }

    private sealed class ByteLevelPre(bool addPrefixSpace, bool useRegex) : PreTokenizer
    {
        private static readonly Regex Gpt2 = new(ByteLevel.Gpt2Pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);

        protected override void Split(Piece piece, List<Piece> output)
        {
            string text = piece.Text;
            if (addPrefixSpace && !text.StartsWith(' ')) text = " " + text;
            if (!useRegex)
            {
                output.Add(new Piece(ByteLevel.Encode(text), piece.AtStart));
                return;
            }
            bool first = true;
            for (var m = Gpt2.Match(text); m.Success; m = m.NextMatch())
            {
                output.Add(new Piece(ByteLevel.Encode(m.Value), piece.AtStart && first));
                first = false;
            }
        }
    }

    private sealed class SplitPre(Regex regex, string behavior, bool invert) : PreTokenizer
    {
        protected override void Split(Piece piece, List<Piece> output) => SplitWith(piece, regex, behavior, invert, output);
    }

    private sealed class DigitsPre(bool individual) : PreTokenizer
    {
        private static readonly Regex One = new(@"\p{N}", RegexOptions.Compiled | RegexOptions.CultureInvariant);
        private static readonly Regex Run = new(@"\p{N}+", RegexOptions.Compiled | RegexOptions.CultureInvariant);

        protected override void Split(Piece piece, List<Piece> output) => SplitWith(piece, individual ? One : Run, "Isolated", false, output);
    }

    private sealed class MetaspacePre(string replacement, string prependScheme, bool split) : PreTokenizer
    {
        private readonly Regex _separator = new(Regex.Escape(replacement), RegexOptions.CultureInvariant);

        protected override void Split(Piece piece, List<Piece> output)
        {
            string text = piece.Text.Replace(" ", replacement, StringComparison.Ordinal);
            bool prepend = prependScheme switch
            {
                "always" => true,
                "first" => piece.AtStart,
                _ => false,
            };
            if (prepend && !text.StartsWith(replacement, StringComparison.Ordinal)) text = replacement + text;
            if (!split)
            {
                output.Add(piece with { Text = text });
                return;
            }
            SplitWith(new Piece(text, piece.AtStart), _separator, "MergedWithNext", false, output);
        }
    }

    private abstract class Decoder
    {
        /// <summary>Hugging Face's <c>decode_chain</c>; <paramref name="inSequence"/> disables the rules that only apply to
        /// the first token of a text (stripping the SentencePiece leading space), for <see cref="DecodeToken"/>.</summary>
        public abstract List<string> Decode(List<string> tokens, bool inSequence);
    }

    private sealed class SequenceDecoder(List<Decoder> items) : Decoder
    {
        public override List<string> Decode(List<string> tokens, bool inSequence)
        {
            foreach (var d in items) tokens = d.Decode(tokens, inSequence);
            return tokens;
        }
    }

    private sealed class ByteLevelDecoder : Decoder
    {
        public override List<string> Decode(List<string> tokens, bool inSequence)
        {
            var bytes = new List<byte>(tokens.Count * 4);
            foreach (var t in tokens) ByteLevel.AppendBytes(t, bytes);
            return [Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes))];
        }
    }

    private sealed class ReplaceDecoder(Regex pattern, string content) : Decoder
    {
        public override List<string> Decode(List<string> tokens, bool inSequence) =>
            tokens.Select(t => pattern.Replace(t, content.Replace("$", "$$"))).ToList();
    }

    private sealed class ByteFallbackDecoder : Decoder
    {
        public override List<string> Decode(List<string> tokens, bool inSequence)
        {
            var result = new List<string>(tokens.Count);
            var pending = new List<byte>();
            foreach (var t in tokens)
            {
                if (t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>'
                    && byte.TryParse(t.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out byte b))
                {
                    pending.Add(b);
                    continue;
                }
                Flush();
                result.Add(t);
            }
            Flush();
            return result;

            void Flush()
            {
                if (pending.Count == 0) return;
                var arr = pending.ToArray();
                pending.Clear();
                try
                {
                    result.Add(new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(arr));
                }
                catch (DecoderFallbackException)
                {
                    for (int i = 0; i < arr.Length; i++) result.Add("\uFFFD");
                }
            }
        }
    }

    private sealed class FuseDecoder : Decoder
    {
        public override List<string> Decode(List<string> tokens, bool inSequence) => [string.Concat(tokens)];
    }

    private sealed class StripDecoder(char content, int start, int stop) : Decoder
    {
        public override List<string> Decode(List<string> tokens, bool inSequence) =>
            tokens.Select(t =>
            {
                int s = 0, e = t.Length;
                if (!inSequence)
                    while (s < Math.Min(start, t.Length) && t[s] == content) s++;
                for (int k = 0; k < stop && e > s && t[e - 1] == content; k++) e--;
                return t[s..e];
            }).ToList();
    }

    private sealed class MetaspaceDecoder(string replacement, bool stripFirst) : Decoder
    {
        public override List<string> Decode(List<string> tokens, bool inSequence)
        {
            var result = new List<string>(tokens.Count);
            for (int i = 0; i < tokens.Count; i++)
            {
                string t = tokens[i].Replace(replacement, " ", StringComparison.Ordinal);
                if (i == 0 && stripFirst && !inSequence && t.StartsWith(' ')) t = t[1..];
                result.Add(t);
            }
            return result;
        }
    }
}
