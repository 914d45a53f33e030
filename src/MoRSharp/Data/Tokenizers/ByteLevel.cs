using System.Text;

namespace MoRSharp.Data.Tokenizers;

/// <summary>GPT-2's byte-level alphabet: every byte is shown as one printable character (space → <c>Ġ</c>, newline → <c>Ċ</c>).</summary>
public static class ByteLevel
{
    /// <summary>GPT-2's pre-tokenization pattern (also the default of the Hugging Face <c>ByteLevel</c> pre-tokenizer).</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static readonly char[] _byteToChar = BuildTable();
    private static readonly Dictionary<char, byte> _charToByte = BuildReverse();

    private static char[] BuildTable()
    {
        var table = new char[256];
        var direct = new bool[256];
        for (int b = '!'; b <= '~'; b++) direct[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) direct[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) direct[b] = true;
        int n = 0;
        for (int b = 0; b < 256; b++) table[b] = direct[b] ? (char)b : (char)(256 + n++);
        return table;
    }

    private static Dictionary<char, byte> BuildReverse()
    {
        var d = new Dictionary<char, byte>(256);
        for (int b = 0; b < 256; b++) d[_byteToChar[b]] = (byte)b;
        return d;
    }

    /// <summary>The character that stands for byte <paramref name="b"/>.</summary>
    public static char ByteToChar(byte b) => _byteToChar[b];

    /// <summary>Maps the UTF-8 bytes of <paramref name="text"/> to byte-level characters.</summary>
    public static string Encode(string text)
    {
        int n = Encoding.UTF8.GetByteCount(text);
        Span<byte> bytes = n <= 512 ? stackalloc byte[n] : new byte[n];
        Encoding.UTF8.GetBytes(text, bytes);
        return string.Create(n, bytes.ToArray(), static (span, arr) =>
        {
            for (int i = 0; i < arr.Length; i++) span[i] = _byteToChar[arr[i]];
        });
    }

    /// <summary>Appends the bytes that the characters of <paramref name="token"/> stand for; a token with a character outside
    /// the alphabet contributes its own UTF-8 bytes instead (as Hugging Face's ByteLevel decoder does).</summary>
    public static void AppendBytes(string token, List<byte> output)
    {
        foreach (char c in token)
        {
            if (!_charToByte.ContainsKey(c))
            {
                output.AddRange(Encoding.UTF8.GetBytes(token));
                return;
            }
        }
        foreach (char c in token) output.Add(_charToByte[c]);
    }
}
