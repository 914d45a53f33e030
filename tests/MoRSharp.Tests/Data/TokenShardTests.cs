using System.Buffers.Binary;
using MoRSharp.Data;

namespace MoRSharp.Tests.Data;

public class TokenShardTests
{
    private static string WriteShard(TempDir dir, string name, int vocab, int? eos, int[] tokens)
    {
        string path = dir.File(name);
        using var w = new TokenShardWriter(path, vocab, eos);
        w.Append(tokens.AsSpan(0, tokens.Length / 2));
        foreach (var t in tokens.AsSpan(tokens.Length / 2)) w.Append(t);
        Assert.False(File.Exists(path));                 // only the .tmp exists until Complete
        Assert.True(File.Exists(path + ".tmp"));
        w.Complete();
        Assert.True(File.Exists(path));
        Assert.False(File.Exists(path + ".tmp"));
        return path;
    }

    [Theory]
    [InlineData(257, 2)]
    [InlineData(65536, 2)]
    [InlineData(65537, 4)]
    [InlineData(200_000, 4)]
    public void RoundTrip(int vocab, int width)
    {
        using var dir = new TempDir();
        var rng = new SplitMix64(7L);
        var tokens = Enumerable.Range(0, 10_001).Select(_ => (int)rng.NextLong(vocab)).ToArray();
        tokens[0] = vocab - 1;
        string path = WriteShard(dir, "s.bin", vocab, vocab - 1, tokens);
        Assert.Equal(TokenShard.HeaderSize + (long)tokens.Length * width, new FileInfo(path).Length);

        using var r = new TokenShardReader(path);
        Assert.Equal(tokens.Length, r.Count);
        Assert.Equal(width, r.BytesPerToken);
        Assert.Equal(vocab, r.VocabSize);
        Assert.Equal(vocab - 1, r.EosId);
        for (int i = 0; i < tokens.Length; i += 97) Assert.Equal(tokens[i], r[i]);
        var all = new long[tokens.Length];
        r.CopyTo(0, all);
        Assert.Equal(tokens.Select(t => (long)t), all);
        var mid = new long[100];
        r.CopyTo(5000, mid);
        Assert.Equal(tokens.Skip(5000).Take(100).Select(t => (long)t), mid);
        Assert.Throws<ArgumentOutOfRangeException>(() => r[tokens.Length]);
        Assert.Throws<ArgumentOutOfRangeException>(() => r.CopyTo(tokens.Length - 5, new long[6]));
    }

    [Fact]
    public void HeaderLayout()
    {
        using var dir = new TempDir();
        string path = WriteShard(dir, "h.bin", 50257, null, [1, 2, 3]);
        var bytes = File.ReadAllBytes(path);
        Assert.Equal("MORTOKS\0"u8.ToArray(), bytes[..8]);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8)));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(12)));
        Assert.Equal(3ul, BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(16)));
        Assert.Equal(50257u, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(24)));
        Assert.Equal(-1, BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(28)));
        Assert.Equal(new byte[] { 1, 0, 2, 0, 3, 0 }, bytes[32..]);
        using var r = new TokenShardReader(path);
        Assert.Null(r.EosId);
    }

    [Fact]
    public void EmptyShardIsValid()
    {
        using var dir = new TempDir();
        string path = WriteShard(dir, "e.bin", 10, 9, []);
        using var r = new TokenShardReader(path);
        Assert.Equal(0, r.Count);
    }

    [Fact]
    public void WriterRejectsOutOfVocabTokensAndCleansUp()
    {
        using var dir = new TempDir();
        string path = dir.File("x.bin");
        using (var w = new TokenShardWriter(path, 100, 99))
        {
            w.Append(5);
            Assert.Throws<ArgumentOutOfRangeException>(() => w.Append(100));
            Assert.Throws<ArgumentOutOfRangeException>(() => w.Append(-1));
        }
        Assert.False(File.Exists(path));
        Assert.False(File.Exists(path + ".tmp"));        // disposed without Complete: the temporary file is gone
    }

    [Fact]
    public void CorruptedFilesGiveClearErrors()
    {
        using var dir = new TempDir();
        string good = WriteShard(dir, "g.bin", 1000, 1, Enumerable.Range(0, 100).ToArray());
        var bytes = File.ReadAllBytes(good);

        string Variant(string name, Action<byte[]> change, int? length = null)
        {
            var copy = bytes[..(length ?? bytes.Length)];
            change(copy);
            return dir.WriteBytes(name, copy);
        }

        void Expect(string path, string fragment)
        {
            var e = Assert.Throws<DataException>(() => new TokenShardReader(path));
            Assert.Contains(path, e.Message);
            Assert.Contains(fragment, e.Message);
        }

        Expect(Variant("magic.bin", b => b[0] = (byte)'X'), "magic");
        Expect(Variant("version.bin", b => b[8] = 9), "version 9");
        Expect(Variant("dtype.bin", b => b[12] = 3), "dtype code 3");
        Expect(Variant("truncated.bin", _ => { }, bytes.Length - 3), "truncated");
        Expect(Variant("count.bin", b => b[16] = 50), "50 tokens");
        Expect(Variant("short.bin", _ => { }, 20), "shorter than the 32-byte header");
        Expect(Variant("eos.bin", b => BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(28), 5000)), "EOS id 5000");
        Assert.Throws<FileNotFoundException>(() => new TokenShardReader(dir.File("missing.bin")));
    }
}
