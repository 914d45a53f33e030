using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace MoRSharp.Data;

/// <summary>
/// The token shard format (<c>.bin</c>): a 32-byte little-endian header, then the tokens as little-endian
/// <c>uint16</c> (vocabulary ≤ 65,536) or <c>uint32</c>.
/// <code>
/// offset size field
///      0    8 magic "MORTOKS\0"
///      8    4 uint32 version = 1
///     12    4 uint32 dtype code: 2 = uint16, 4 = uint32 (the bytes per token)
///     16    8 uint64 token count
///     24    4 uint32 vocabulary size
///     28    4 int32  EOS id (−1: none)
///     32    …  tokens
/// </code>
/// </summary>
public static class TokenShard
{
    public const int HeaderSize = 32;
    public const uint Version = 1;
    public const uint DTypeUInt16 = 2;
    public const uint DTypeUInt32 = 4;
    public static ReadOnlySpan<byte> Magic => "MORTOKS\0"u8;

    /// <summary>The dtype code (= bytes per token) used for <paramref name="vocabSize"/>: 2 when every id fits in uint16.</summary>
    public static uint DTypeFor(int vocabSize) => vocabSize <= 65536 ? DTypeUInt16 : DTypeUInt32;

    internal static void WriteHeader(Span<byte> header, uint dtype, long count, int vocabSize, int eosId)
    {
        header.Clear();
        Magic.CopyTo(header);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], Version);
        BinaryPrimitives.WriteUInt32LittleEndian(header[12..], dtype);
        BinaryPrimitives.WriteUInt64LittleEndian(header[16..], (ulong)count);
        BinaryPrimitives.WriteUInt32LittleEndian(header[24..], (uint)vocabSize);
        BinaryPrimitives.WriteInt32LittleEndian(header[28..], eosId);
    }
}

/// <summary>
/// Writes a token shard by streaming appends. Data goes to <c>path.tmp</c>; <see cref="Complete"/> patches the token count
/// into the header and renames the file to <c>path</c> (replacing an existing one), so a reader never sees a half-written
/// shard. Disposing without <see cref="Complete"/> deletes the temporary file.
/// </summary>
public sealed class TokenShardWriter : IDisposable
{
    private const int BufferBytes = 1 << 20;
    private readonly FileStream _stream;
    private readonly byte[] _buffer = new byte[BufferBytes];
    private int _used;
    private bool _completed;
    private bool _disposed;

    public string Path { get; }
    public string TempPath { get; }
    public int VocabSize { get; }
    public int? EosId { get; }
    /// <summary>2 (uint16) or 4 (uint32).</summary>
    public int BytesPerToken { get; }
    /// <summary>Tokens appended so far.</summary>
    public long Count { get; private set; }

    /// <param name="path">Final file name; the data is written to <c>path + ".tmp"</c> until <see cref="Complete"/>.</param>
    /// <param name="vocabSize">Every token must be in [0, vocabSize); ≤ 65,536 selects uint16 storage.</param>
    /// <param name="eosId">Recorded in the header (−1 when null).</param>
    public TokenShardWriter(string path, int vocabSize, int? eosId)
    {
        if (vocabSize <= 0) throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "vocabulary size must be positive");
        if (eosId is int e && (e < 0 || e >= vocabSize)) throw new ArgumentOutOfRangeException(nameof(eosId), eosId, $"EOS id must be in [0, {vocabSize})");
        Path = path;
        TempPath = path + ".tmp";
        VocabSize = vocabSize;
        EosId = eosId;
        BytesPerToken = (int)TokenShard.DTypeFor(vocabSize);
        string? dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        _stream = new FileStream(TempPath, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1);
        Span<byte> header = stackalloc byte[TokenShard.HeaderSize];
        TokenShard.WriteHeader(header, (uint)BytesPerToken, 0, vocabSize, eosId ?? -1);
        _stream.Write(header);
    }

    /// <summary>Appends one token.</summary>
    public void Append(int token)
    {
        Append(MemoryMarshal.CreateReadOnlySpan(ref token, 1));
    }

    /// <summary>Appends tokens; each must be in [0, <see cref="VocabSize"/>).</summary>
    public void Append(ReadOnlySpan<int> tokens)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed) throw new InvalidOperationException($"{Path}: the shard is already complete");
        foreach (int t in tokens)
        {
            if ((uint)t >= (uint)VocabSize)
                throw new ArgumentOutOfRangeException(nameof(tokens), t, $"{Path}: token {t} is outside the vocabulary [0, {VocabSize})");
            if (_used + BytesPerToken > _buffer.Length) FlushBuffer();
            if (BytesPerToken == 2) BinaryPrimitives.WriteUInt16LittleEndian(_buffer.AsSpan(_used), (ushort)t);
            else BinaryPrimitives.WriteUInt32LittleEndian(_buffer.AsSpan(_used), (uint)t);
            _used += BytesPerToken;
        }
        Count += tokens.Length;
    }

    private void FlushBuffer()
    {
        _stream.Write(_buffer, 0, _used);
        _used = 0;
    }

    /// <summary>Writes the final token count into the header, flushes to disk and renames <see cref="TempPath"/> to <see cref="Path"/>.</summary>
    public void Complete()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed) return;
        FlushBuffer();
        Span<byte> count = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(count, (ulong)Count);
        _stream.Position = 16;
        _stream.Write(count);
        _stream.Flush(flushToDisk: true);
        _stream.Dispose();
        File.Move(TempPath, Path, overwrite: true);
        _completed = true;
        _disposed = true;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _stream.Dispose();
        if (!_completed)
        {
            try { File.Delete(TempPath); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}

/// <summary>
/// Reads a token shard through a read-only memory map (the file is never loaded whole; the OS pages it in).
/// The constructor validates magic, version, dtype and that token count × bytes per token equals the payload size, and
/// throws a <see cref="DataException"/> naming the file otherwise. Thread-safe for concurrent reads.
/// </summary>
public sealed unsafe class TokenShardReader : IDisposable
{
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;
    private readonly byte* _tokens;
    private bool _disposed;

    public string Path { get; }
    /// <summary>Number of tokens.</summary>
    public long Count { get; }
    /// <summary>2 (uint16) or 4 (uint32).</summary>
    public int BytesPerToken { get; }
    public int VocabSize { get; }
    /// <summary>EOS id from the header, or null (−1 stored).</summary>
    public int? EosId { get; }

    public TokenShardReader(string path)
    {
        Path = path;
        if (!File.Exists(path)) throw new FileNotFoundException($"token shard not found: {path}", path);
        long length = new FileInfo(path).Length;
        if (length < TokenShard.HeaderSize)
            throw Fail($"file is {length} bytes, shorter than the {TokenShard.HeaderSize}-byte header (not a token shard, or truncated)");
        Span<byte> header = stackalloc byte[TokenShard.HeaderSize];
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1))
            fs.ReadExactly(header);
        if (!header[..8].SequenceEqual(TokenShard.Magic))
            throw Fail($"bad magic {Convert.ToHexString(header[..8])} (expected \"MORTOKS\\0\"): not a MoRSharp token shard");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);
        if (version != TokenShard.Version) throw Fail($"unsupported format version {version} (this build reads version {TokenShard.Version})");
        uint dtype = BinaryPrimitives.ReadUInt32LittleEndian(header[12..]);
        if (dtype != TokenShard.DTypeUInt16 && dtype != TokenShard.DTypeUInt32)
            throw Fail($"unknown dtype code {dtype} (expected 2 = uint16 or 4 = uint32)");
        ulong count = BinaryPrimitives.ReadUInt64LittleEndian(header[16..]);
        uint vocab = BinaryPrimitives.ReadUInt32LittleEndian(header[24..]);
        int eos = BinaryPrimitives.ReadInt32LittleEndian(header[28..]);
        if (vocab == 0 || vocab > int.MaxValue) throw Fail($"invalid vocabulary size {vocab}");
        if (dtype == TokenShard.DTypeUInt16 && vocab > 65536) throw Fail($"vocabulary size {vocab} does not fit the uint16 dtype");
        if (eos < -1 || eos >= (long)vocab) throw Fail($"EOS id {eos} is outside the vocabulary [0, {vocab})");
        long payload = length - TokenShard.HeaderSize;
        if (count > (ulong)(long.MaxValue / dtype) || (long)count * dtype != payload)
            throw Fail($"header says {count} tokens × {dtype} bytes = {(decimal)count * dtype} bytes, but the payload is {payload} bytes " +
                       (payload < (decimal)count * dtype ? "(truncated file)" : "(trailing data or corrupted header)"));
        Count = (long)count;
        BytesPerToken = (int)dtype;
        VocabSize = (int)vocab;
        EosId = eos < 0 ? null : eos;

        _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, mapName: null, capacity: 0, MemoryMappedFileAccess.Read);
        try
        {
            _view = _map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            byte* p = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _base = p;
            _tokens = p + _view.PointerOffset + TokenShard.HeaderSize;
        }
        catch
        {
            _view?.Dispose();
            _map.Dispose();
            throw;
        }
    }

    private DataException Fail(string what) => new($"{Path}: {what}");

    /// <summary>The token at <paramref name="index"/>.</summary>
    public int this[long index]
    {
        get
        {
            if ((ulong)index >= (ulong)Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"{Path}: index outside [0, {Count})");
            ObjectDisposedException.ThrowIf(_disposed, this);
            return BytesPerToken == 2
                ? BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(_tokens + index * 2, 2))
                : (int)BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(_tokens + index * 4, 4));
        }
    }

    /// <summary>Copies tokens [start, start + dst.Length) into <paramref name="dst"/> as int64 (ready for an int64 tensor).</summary>
    public void CopyTo(long start, Span<long> dst)
    {
        CheckRange(start, dst.Length);
        if (BytesPerToken == 2)
        {
            var src = new ReadOnlySpan<ushort>(_tokens + start * 2, dst.Length);
            if (BitConverter.IsLittleEndian) for (int i = 0; i < src.Length; i++) dst[i] = src[i];
            else for (int i = 0; i < src.Length; i++) dst[i] = BinaryPrimitives.ReverseEndianness(src[i]);
        }
        else
        {
            var src = new ReadOnlySpan<uint>(_tokens + start * 4, dst.Length);
            if (BitConverter.IsLittleEndian) for (int i = 0; i < src.Length; i++) dst[i] = src[i];
            else for (int i = 0; i < src.Length; i++) dst[i] = BinaryPrimitives.ReverseEndianness(src[i]);
        }
    }

    /// <summary>Copies tokens [start, start + dst.Length) into <paramref name="dst"/> as int32.</summary>
    public void CopyTo(long start, Span<int> dst)
    {
        CheckRange(start, dst.Length);
        for (int i = 0; i < dst.Length; i++)
            dst[i] = BytesPerToken == 2
                ? BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(_tokens + (start + i) * 2, 2))
                : (int)BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(_tokens + (start + i) * 4, 4));
    }

    private void CheckRange(long start, int length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (start < 0 || length < 0 || start > Count - length)
            throw new ArgumentOutOfRangeException(nameof(start), start, $"{Path}: range [{start}, {start + length}) is outside [0, {Count})");
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_view is not null)
        {
            if (_base is not null) _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }
}
