using System.Buffers.Binary;
using System.IO.Compression;
using MoRSharp.Data;

namespace MoRSharp.Modalities.Image;

/// <summary>
/// LeCun's IDX format, plain or gzip-compressed (detected by the gzip magic 1F 8B): a big-endian header
/// (two zero bytes, the element type 0x08 = unsigned byte, the number of dimensions, one int32 per dimension) and the data.
/// Every problem is a <see cref="DataException"/> naming the file: a corrupt or truncated gzip stream, a wrong magic,
/// another element type, and data shorter or longer than the header declares.
/// </summary>
public static class IdxFile
{
    /// <summary>Magic of an IDX file of unsigned bytes with <c>ndim</c> dimensions: 0x0800 + ndim (2051 images, 2049 labels).</summary>
    public static int Magic(int ndim) => 0x0800 + ndim;

    /// <summary>Reads an unsigned-byte IDX file with <paramref name="ndim"/> dimensions: (dims, data).</summary>
    public static (int[] dims, byte[] data) Read(string path, int ndim)
    {
        byte[] bytes = Decompress(path);
        int magic = bytes.Length >= 4 ? BinaryPrimitives.ReadInt32BigEndian(bytes) : -1;
        if (magic != Magic(ndim))
        {
            string what = magic < 0 ? "fewer than 4 bytes" : (magic >> 8) == 0x08 ? $"unsigned bytes with {magic & 0xFF} dimension(s)" : "not an unsigned-byte IDX header";
            throw new DataException($"{path}: IDX magic {magic} ({what}); expected {Magic(ndim)} (unsigned bytes, {ndim} dimension(s){(ndim == 3 ? ": MNIST images" : ndim == 1 ? ": MNIST labels" : "")})");
        }
        if (bytes.Length < 4 + 4 * ndim)
            throw new DataException($"{path}: truncated IDX header ({bytes.Length} bytes; an IDX file with {ndim} dimension(s) starts with {4 + 4 * ndim})");
        var dims = new int[ndim];
        long expected = 1;
        for (int i = 0; i < ndim; i++)
        {
            dims[i] = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4 + 4 * i));
            if (dims[i] < 0) throw new DataException($"{path}: IDX dimension {i} is negative ({dims[i]})");
            expected *= dims[i];
        }
        int header = 4 + 4 * ndim;
        long actual = bytes.Length - header;
        if (actual < expected)
            throw new DataException($"{path}: truncated: the IDX header declares {string.Join("×", dims)} = {expected:N0} data bytes, the file holds {actual:N0} (a cut-off download?)");
        if (actual > expected)
            throw new DataException($"{path}: {actual - expected:N0} bytes after the {string.Join("×", dims)} = {expected:N0} data bytes the IDX header declares");
        return (dims, bytes[header..]);
    }

    private static byte[] Decompress(string path)
    {
        byte[] raw;
        try { raw = File.ReadAllBytes(path); }
        catch (FileNotFoundException) { throw new DataException($"{path}: file not found"); }
        if (raw.Length < 2 || raw[0] != 0x1F || raw[1] != 0x8B) return raw;
        try
        {
            using var gz = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            using var output = new MemoryStream();
            gz.CopyTo(output);
            var data = output.ToArray();
            // The gzip trailer ends with the uncompressed size mod 2³²; a stream cut short decodes without error on some
            // runtimes, so compare the two (a cut file's last four bytes are compressed data, not this size).
            uint isize = BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(raw.Length - 4));
            if (raw.Length < 18 || isize != unchecked((uint)data.Length))
                throw new DataException($"{path}: truncated or corrupt gzip file: decompressed {data.Length:N0} bytes, the gzip trailer says {isize:N0}");
            return data;
        }
        catch (InvalidDataException e)
        {
            throw new DataException($"{path}: corrupt or truncated gzip file ({e.Message})", e);
        }
    }
}
