namespace MoRSharp.Data.Tokenizers;

/// <summary>
/// A text tokenizer: text ↔ token ids.
/// </summary>
/// <remarks>
/// <para><b>Special tokens.</b> <see cref="Encode"/> treats its input as plain text and adds nothing: no BOS, no EOS, and a
/// literal special-token string in the text (e.g. <c>&lt;|endoftext|&gt;</c> or <c>&lt;/s&gt;</c>) is encoded as ordinary
/// text, never as the special token. Special tokens are placed by the caller: the data pipeline
/// (<see cref="DataPreparer"/>) appends <see cref="EosId"/> after every document, so EOS separates documents in the shards;
/// a chat or generation front-end may prepend <see cref="BosId"/> itself where the model expects it (Llama-style
/// tokenizers report it, GPT-2 and the byte tokenizer have none).</para>
/// <para><see cref="Decode"/> renders special tokens as their text (e.g. <c>&lt;|endoftext|&gt;</c>), so
/// <c>Decode(Encode(s)) == s</c> for any string, but <c>Encode(Decode(ids))</c> may differ when ids contain special tokens.
/// Token ids outside [0, <see cref="VocabSize"/>) throw <see cref="ArgumentOutOfRangeException"/>.</para>
/// <para>Implementations are immutable after construction and safe to use from several threads.</para>
/// </remarks>
public interface ITokenizer
{
    /// <summary>A short name: <c>gpt2</c>, <c>bytes</c>, or for file-based tokenizers the name of the folder they came from.</summary>
    string Name { get; }

    /// <summary>Number of token ids (largest id + 1, special tokens included); an embedding table needs this many rows.</summary>
    int VocabSize { get; }

    /// <summary>End-of-sequence / document separator token, or null if the tokenizer has none.</summary>
    int? EosId { get; }

    /// <summary>Beginning-of-sequence token, or null if the tokenizer has none. <see cref="Encode"/> never adds it.</summary>
    int? BosId { get; }

    /// <summary>Encodes plain text; adds no special tokens and does not parse special-token strings (see remarks).</summary>
    int[] Encode(string text);

    /// <summary>Decodes a sequence of ids to text; byte sequences that are not valid UTF-8 become U+FFFD.</summary>
    string Decode(ReadOnlySpan<int> ids);

    /// <summary>
    /// The text of one token as it appears inside a sequence (e.g. <c>" world"</c>, with the leading space that
    /// SentencePiece-style <c>▁</c> stands for). A token that is only part of a multi-byte UTF-8 character decodes to U+FFFD;
    /// to stream text, decode the growing sequence with <see cref="Decode"/> instead.
    /// </summary>
    string DecodeToken(int id);

    /// <summary>Writes what <see cref="TokenizerFactory.Load"/> needs to rebuild this tokenizer into <paramref name="directory"/>
    /// (created if missing): <c>tokenizer_info.json</c>, plus copies of the tokenizer files for file-based tokenizers.</summary>
    void SaveTo(string directory);

    /// <summary>Special-token strings and their ids (e.g. <c>&lt;|im_start|&gt;</c>), which <see cref="Encode"/> never matches in text;
    /// <see cref="TokenizerExtensions.EncodeWithSpecialTokens"/> does, for trusted text such as a rendered chat template.</summary>
    IReadOnlyDictionary<string, int> SpecialTokens => TokenizerExtensions.NoSpecialTokens;
}

public static class TokenizerExtensions
{
    internal static readonly IReadOnlyDictionary<string, int> NoSpecialTokens = new Dictionary<string, int>();

    /// <summary>
    /// Encodes text in which special-token strings stand for their tokens (longest match first; the text between them is
    /// encoded as plain text). Only for trusted text — a chat template's rendering — never for raw user input.
    /// </summary>
    public static int[] EncodeWithSpecialTokens(this ITokenizer tokenizer, string text)
    {
        var specials = tokenizer.SpecialTokens;
        if (specials.Count == 0) return tokenizer.Encode(text);
        var names = specials.Keys.Where(k => k.Length > 0).OrderByDescending(k => k.Length).ToArray();
        var ids = new List<int>();
        int start = 0, i = 0;
        while (i < text.Length)
        {
            string? hit = null;
            foreach (var n in names)
                if (string.CompareOrdinal(text, i, n, 0, n.Length) == 0) { hit = n; break; }
            if (hit is null) { i++; continue; }
            if (i > start) ids.AddRange(tokenizer.Encode(text[start..i]));
            ids.Add(specials[hit]);
            i += hit.Length;
            start = i;
        }
        if (start < text.Length) ids.AddRange(tokenizer.Encode(text[start..]));
        return ids.ToArray();
    }
}
