using System.Text;

namespace MoRSharp.Data.Tokenizers;

/// <summary>
/// The byte tokenizer: token ids 0–255 are the UTF-8 bytes of the text, 256 is EOS (decoded as <c>&lt;|endoftext|&gt;</c>);
/// vocabulary 257, no BOS. No files, no training: used for the built-in synthetic corpus and small CPU demos.
/// </summary>
public sealed class ByteTokenizer : ITokenizer
{
    public const int Eos = 256;
    public const string EosString = "<|endoftext|>";

    public string Name => "bytes";
    public int VocabSize => 257;
    public int? EosId => Eos;
    public int? BosId => null;

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var bytes = Encoding.UTF8.GetBytes(text);
        var ids = new int[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) ids[i] = bytes[i];
        return ids;
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        var sb = new StringBuilder(ids.Length);
        var buffer = new List<byte>(ids.Length);
        foreach (int id in ids)
        {
            if (id == Eos)
            {
                Flush();
                sb.Append(EosString);
            }
            else if ((uint)id < 256u) buffer.Add((byte)id);
            else throw new ArgumentOutOfRangeException(nameof(ids), id, $"token id {id} is outside the bytes vocabulary [0, 257)");
        }
        Flush();
        return sb.ToString();

        void Flush()
        {
            if (buffer.Count == 0) return;
            sb.Append(Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(buffer)));
            buffer.Clear();
        }
    }

    public string DecodeToken(int id)
    {
        if (id == Eos) return EosString;
        if ((uint)id >= 256u) throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is outside the bytes vocabulary [0, 257)");
        return id < 0x80 ? ((char)id).ToString() : "\uFFFD";
    }

    public void SaveTo(string directory) => TokenizerFactory.WriteInfo(directory, "bytes", Name);

    public override string ToString() => "bytes (UTF-8 bytes 0–255, eos 256)";
}
