using System.Buffers.Binary;
using System.Text.Json;
using static TorchSharp.torch;

namespace MoRSharp.IO;

/// <summary>A malformed or mismatching safetensors file; the message names the file and the tensor or field.</summary>
public sealed class SafeTensorsException(string message) : Exception(message);

/// <summary>One tensor's entry in a safetensors header.</summary>
public sealed record SafeTensorInfo(string Name, string DType, long[] Shape, long Begin, long End);

/// <summary>
/// The safetensors format: 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
/// then the data area. Reading validates the header (length inside the file, offsets inside the data area,
/// non-overlapping, shape × dtype size = byte span) and reads one tensor at a time from the file, never the whole file.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    private const long MaxHeaderBytes = 100L * 1024 * 1024;
    private readonly FileStream stream;
    private readonly long dataStart;
    public string Path { get; }
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public static int DTypeSize(string dtype) => dtype switch
    {
        "F32" or "I32" or "U32" => 4,
        "F16" or "BF16" or "I16" or "U16" => 2,
        "F64" or "I64" or "U64" => 8,
        "I8" or "U8" or "BOOL" => 1,
        _ => -1,
    };

    public SafeTensorsFile(string path)
    {
        Path = path;
        stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        try
        {
            long fileLength = stream.Length;
            if (fileLength < 8) throw Fail($"file is {fileLength} bytes, shorter than the 8-byte header length");
            Span<byte> lenBytes = stackalloc byte[8];
            stream.ReadExactly(lenBytes);
            ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
            if (headerLen > (ulong)(fileLength - 8)) throw Fail($"header length {headerLen} runs past the end of the file ({fileLength} bytes)");
            if (headerLen > MaxHeaderBytes) throw Fail($"header length {headerLen} exceeds the {MaxHeaderBytes}-byte limit");
            var header = new byte[headerLen];
            stream.ReadExactly(header);
            dataStart = 8 + (long)headerLen;
            long dataLength = fileLength - dataStart;
            (Tensors, Metadata) = ParseHeader(header, dataLength);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    private SafeTensorsException Fail(string what) => new($"{Path}: {what}");

    private (Dictionary<string, SafeTensorInfo>, Dictionary<string, string>) ParseHeader(byte[] header, long dataLength)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header); }
        catch (JsonException e) { throw Fail($"header is not valid JSON ({e.Message})"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Fail("header is not a JSON object");
            var tensors = new Dictionary<string, SafeTensorInfo>();
            var metadata = new Dictionary<string, string>();
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw Fail("__metadata__ is not an object");
                    foreach (var m in prop.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : throw Fail($"__metadata__.{m.Name} is not a string");
                    continue;
                }
                var e = prop.Value;
                string name = prop.Name;
                if (e.ValueKind != JsonValueKind.Object) throw Fail($"tensor '{name}': entry is not an object");
                if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String) throw Fail($"tensor '{name}': missing string field 'dtype'");
                string dtype = dt.GetString()!;
                int size = DTypeSize(dtype);
                if (size < 0) throw Fail($"tensor '{name}': unknown dtype '{dtype}'");
                if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array) throw Fail($"tensor '{name}': missing array field 'shape'");
                var shape = new List<long>();
                foreach (var s in sh.EnumerateArray())
                {
                    if (s.ValueKind != JsonValueKind.Number || !s.TryGetInt64(out long dim) || dim < 0) throw Fail($"tensor '{name}': shape entries must be non-negative integers");
                    shape.Add(dim);
                }
                if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
                    throw Fail($"tensor '{name}': 'data_offsets' must be [begin, end]");
                if (!off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end) || begin < 0 || end < begin)
                    throw Fail($"tensor '{name}': invalid data_offsets");
                if (end > dataLength) throw Fail($"tensor '{name}': data_offsets [{begin}, {end}] run past the data area ({dataLength} bytes)");
                long elements = 1;
                foreach (var d in shape) elements = checked(elements * d);
                if (checked(elements * size) != end - begin)
                    throw Fail($"tensor '{name}': shape [{string.Join(", ", shape)}] × {dtype} ({size} bytes) = {elements * size} bytes, but data_offsets span {end - begin}");
                tensors[name] = new SafeTensorInfo(name, dtype, shape.ToArray(), begin, end);
            }
            var sorted = tensors.Values.OrderBy(t => t.Begin).ToList();
            for (int i = 1; i < sorted.Count; i++)
                if (sorted[i].Begin < sorted[i - 1].End)
                    throw Fail($"tensors '{sorted[i - 1].Name}' and '{sorted[i].Name}' overlap in the data area");
            return (tensors, metadata);
        }
    }

    /// <summary>Reads one tensor into a new CPU tensor of its stored dtype.</summary>
    public Tensor Read(string name)
    {
        if (!Tensors.TryGetValue(name, out var info)) throw Fail($"no tensor named '{name}'");
        var bytes = new byte[info.End - info.Begin];
        stream.Seek(dataStart + info.Begin, SeekOrigin.Begin);
        stream.ReadExactly(bytes);
        var dtype = info.DType switch
        {
            "F32" => ScalarType.Float32, "F16" => ScalarType.Float16, "BF16" => ScalarType.BFloat16, "F64" => ScalarType.Float64,
            "I64" => ScalarType.Int64, "I32" => ScalarType.Int32, "I16" => ScalarType.Int16, "I8" => ScalarType.Int8,
            "U8" => ScalarType.Byte, "BOOL" => ScalarType.Bool,
            _ => throw Fail($"tensor '{name}': dtype {info.DType} is not supported by the tensor engine"),
        };
        var t = torch.empty(info.Shape, dtype: dtype);
        if (bytes.Length > 0) t.bytes = bytes;
        return t;
    }

    public void Dispose() => stream.Dispose();

    /// <summary>Writes tensors (F32/F16/BF16/I64/…) to <paramref name="path"/> atomically: temp file + rename.</summary>
    public static void Save(string path, IEnumerable<(string name, Tensor tensor)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var header = new Dictionary<string, object>();
        if (metadata is { Count: > 0 }) header["__metadata__"] = metadata;
        long offset = 0;
        foreach (var (name, t) in list)
        {
            string dtype = t.dtype switch
            {
                ScalarType.Float32 => "F32", ScalarType.Float16 => "F16", ScalarType.BFloat16 => "BF16", ScalarType.Float64 => "F64",
                ScalarType.Int64 => "I64", ScalarType.Int32 => "I32", ScalarType.Int16 => "I16", ScalarType.Int8 => "I8",
                ScalarType.Byte => "U8", ScalarType.Bool => "BOOL",
                _ => throw new ArgumentException($"tensor '{name}': dtype {t.dtype} cannot be saved"),
            };
            long bytes = t.numel() * DTypeSize(dtype);
            header[name] = new { dtype, shape = t.shape, data_offsets = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        var json = JsonSerializer.SerializeToUtf8Bytes(header);
        int pad = (8 - json.Length % 8) % 8;                       // align the data area to 8 bytes, padding with spaces
        var headerBytes = new byte[json.Length + pad];
        json.CopyTo(headerBytes, 0);
        for (int i = json.Length; i < headerBytes.Length; i++) headerBytes[i] = (byte)' ';

        string tmp = path + ".tmp";
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write))
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)headerBytes.Length);
            fs.Write(len);
            fs.Write(headerBytes);
            foreach (var (_, t) in list)
            {
                using var c = t.detach().cpu().contiguous();
                fs.Write(c.bytes);
            }
            fs.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
    }
}
