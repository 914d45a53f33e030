using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text.Json;
using static TorchSharp.torch;

namespace MoRSharp.IO;

/// <summary>A malformed or mismatching safetensors file; the message names the file and the tensor or field.</summary>
public sealed class SafeTensorsException(string message) : Exception(message);

/// <summary>One tensor's entry in a safetensors header; <see cref="Begin"/>/<see cref="End"/> are relative to the data area.</summary>
public sealed record SafeTensorInfo(string Name, string DType, long[] Shape, long Begin, long End)
{
    public long ByteCount => End - Begin;
}

/// <summary>
/// The safetensors format: 8-byte little-endian header length N, N bytes of JSON header
/// <c>{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}</c>, then the data area.
/// <para>Opening validates the whole header before any tensor is touched: the length lies inside the file (and below
/// 100 MB), the header is a UTF-8 JSON object without duplicate names, every entry has a known dtype, non-negative integer
/// dims, offsets <c>0 ≤ begin ≤ end ≤ data length</c>, shape × dtype size = end − begin (overflow-checked), and no two
/// tensors overlap. Every failure is a <see cref="SafeTensorsException"/> naming the file and the tensor or field.</para>
/// <para>The file is memory-mapped; <see cref="Read"/> copies one tensor from the mapping straight into a new native
/// tensor (no managed copy of the file or the tensor), so loading a model needs memory for the model only.</para>
/// </summary>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    private const long MaxHeaderBytes = 100L * 1024 * 1024;
    private readonly MemoryMappedFile map;
    private readonly MemoryMappedViewAccessor view;
    private byte* basePtr;
    private readonly long dataStart;
    public string Path { get; }
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>Tensor names in header order.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>Bytes per element of a safetensors dtype name, or −1 when MoRSharp does not know the dtype.</summary>
    public static int DTypeSize(string dtype) => dtype switch
    {
        "F32" or "I32" or "U32" => 4,
        "F16" or "BF16" or "I16" or "U16" => 2,
        "F64" or "I64" or "U64" => 8,
        "I8" or "U8" or "BOOL" => 1,
        _ => -1,
    };

    /// <summary>The tensor engine's type for a safetensors dtype name, or null (U16/U32/U64 have none in libtorch).</summary>
    public static ScalarType? ScalarTypeOf(string dtype) => dtype switch
    {
        "F32" => ScalarType.Float32, "F16" => ScalarType.Float16, "BF16" => ScalarType.BFloat16, "F64" => ScalarType.Float64,
        "I64" => ScalarType.Int64, "I32" => ScalarType.Int32, "I16" => ScalarType.Int16, "I8" => ScalarType.Int8,
        "U8" => ScalarType.Byte, "BOOL" => ScalarType.Bool,
        _ => null,
    };

    /// <summary>The safetensors dtype name of a tensor type (the inverse of <see cref="ScalarTypeOf"/>).</summary>
    public static string DTypeName(ScalarType t) => t switch
    {
        ScalarType.Float32 => "F32", ScalarType.Float16 => "F16", ScalarType.BFloat16 => "BF16", ScalarType.Float64 => "F64",
        ScalarType.Int64 => "I64", ScalarType.Int32 => "I32", ScalarType.Int16 => "I16", ScalarType.Int8 => "I8",
        ScalarType.Byte => "U8", ScalarType.Bool => "BOOL",
        _ => throw new ArgumentException($"dtype {t} cannot be stored in safetensors"),
    };

    public SafeTensorsFile(string path)
    {
        Path = path;
        long fileLength;
        byte[] header;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
            fileLength = stream.Length;
            if (fileLength < 8) throw Fail($"file is {fileLength} bytes, shorter than the 8-byte header length (truncated?)");
            Span<byte> lenBytes = stackalloc byte[8];
            stream.ReadExactly(lenBytes);
            ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
            if (headerLen > (ulong)(fileLength - 8)) throw Fail($"header length {headerLen} runs past the end of the file ({fileLength} bytes; truncated?)");
            if (headerLen > MaxHeaderBytes) throw Fail($"header length {headerLen} exceeds the {MaxHeaderBytes}-byte limit");
            header = new byte[headerLen];
            stream.ReadExactly(header);
            dataStart = 8 + (long)headerLen;
        }
        catch (FileNotFoundException) { throw Fail("file not found"); }
        catch (DirectoryNotFoundException) { throw Fail("file not found (the directory does not exist)"); }
        (Tensors, Metadata, Names) = ParseHeader(header, fileLength - dataStart);

        map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, mapName: null, capacity: 0, MemoryMappedFileAccess.Read);
        try
        {
            view = map.CreateViewAccessor(0, fileLength, MemoryMappedFileAccess.Read);
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
            basePtr += view.PointerOffset;
        }
        catch
        {
            view?.Dispose();
            map.Dispose();
            throw;
        }
    }

    private SafeTensorsException Fail(string what) => new($"{Path}: {what}");

    private (Dictionary<string, SafeTensorInfo>, Dictionary<string, string>, List<string>) ParseHeader(byte[] header, long dataLength)
    {
        try { _ = StrictUtf8.GetCharCount(header); }
        catch (System.Text.DecoderFallbackException) { throw Fail("header is not valid UTF-8"); }
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header); }
        catch (JsonException e) { throw Fail($"header is not valid JSON ({e.Message})"); }
        catch (ArgumentException e) { throw Fail($"header is not valid UTF-8 JSON ({e.Message})"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Fail($"header is {Describe(doc.RootElement.ValueKind)}, not a JSON object");
            var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var names = new List<string>();
            bool seenMetadata = false;
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (seenMetadata) throw Fail("header has two __metadata__ entries");
                    seenMetadata = true;
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw Fail("__metadata__ is not an object");
                    foreach (var m in prop.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : throw Fail($"__metadata__.{m.Name} is not a string");
                    continue;
                }
                string name = prop.Name;
                if (tensors.ContainsKey(name)) throw Fail($"tensor '{name}' appears twice in the header");
                var info = ParseEntry(name, prop.Value, dataLength);
                tensors[name] = info;
                names.Add(name);
            }
            // Non-overlapping: sorted by begin, each (non-empty) tensor starts at or after the previous one's end.
            var sorted = tensors.Values.Where(t => t.End > t.Begin).OrderBy(t => t.Begin).ToList();
            for (int i = 1; i < sorted.Count; i++)
                if (sorted[i].Begin < sorted[i - 1].End)
                    throw Fail($"tensors '{sorted[i - 1].Name}' [{sorted[i - 1].Begin}, {sorted[i - 1].End}) and '{sorted[i].Name}' [{sorted[i].Begin}, {sorted[i].End}) overlap in the data area");
            return (tensors, metadata, names);
        }
    }

    private SafeTensorInfo ParseEntry(string name, JsonElement e, long dataLength)
    {
        if (e.ValueKind != JsonValueKind.Object) throw Fail($"tensor '{name}': entry is {Describe(e.ValueKind)}, not an object");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String) throw Fail($"tensor '{name}': missing string field 'dtype'");
        string dtype = dt.GetString()!;
        int size = DTypeSize(dtype);
        if (size < 0) throw Fail($"tensor '{name}': unknown dtype '{dtype}' (supported: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL)");
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array) throw Fail($"tensor '{name}': missing array field 'shape'");
        var shape = new List<long>();
        foreach (var s in sh.EnumerateArray())
        {
            if (s.ValueKind != JsonValueKind.Number || !s.TryGetInt64(out long dim) || dim < 0)
                throw Fail($"tensor '{name}': shape entries must be non-negative integers, got {Clip(s.GetRawText())}");
            shape.Add(dim);
        }
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw Fail($"tensor '{name}': 'data_offsets' must be an array [begin, end]");
        if (off[0].ValueKind != JsonValueKind.Number || off[1].ValueKind != JsonValueKind.Number
            || !off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end))
            throw Fail($"tensor '{name}': data_offsets must be two integers, got {Clip(off.GetRawText())}");
        if (begin < 0 || end < begin) throw Fail($"tensor '{name}': data_offsets [{begin}, {end}] are not 0 ≤ begin ≤ end");
        if (end > dataLength) throw Fail($"tensor '{name}': data_offsets [{begin}, {end}] run past the data area ({dataLength} bytes; truncated?)");
        long bytes;
        try
        {
            long elements = 1;
            foreach (var d in shape) elements = checked(elements * d);
            bytes = checked(elements * size);
        }
        catch (OverflowException) { throw Fail($"tensor '{name}': shape [{string.Join(", ", shape)}] is too large"); }
        if (bytes != end - begin)
            throw Fail($"tensor '{name}': shape [{string.Join(", ", shape)}] × {dtype} ({size} bytes) = {bytes} bytes, but data_offsets span {end - begin}");
        foreach (var p in e.EnumerateObject())
            if (p.Name is not ("dtype" or "shape" or "data_offsets")) throw Fail($"tensor '{name}': unknown field '{p.Name}'");
        return new SafeTensorInfo(name, dtype, shape.ToArray(), begin, end);
    }

    private static readonly System.Text.UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static string Describe(JsonValueKind k) => MoRSharp.Config.ConfigJson.Describe(k);
    private static string Clip(string s) => s.Length > 60 ? s[..60] + "…" : s;

    /// <summary>Reads one tensor into a new CPU tensor of its stored dtype (copied from the mapping, no managed buffer).</summary>
    public Tensor Read(string name)
    {
        ObjectDisposedException.ThrowIf(basePtr is null, this);
        if (!Tensors.TryGetValue(name, out var info)) throw Fail($"no tensor named '{name}'");
        var dtype = ScalarTypeOf(info.DType) ?? throw Fail($"tensor '{name}': dtype {info.DType} is not supported by the tensor engine");
        var t = torch.empty(info.Shape, dtype: dtype);
        if (info.ByteCount > 0)
        {
            var dst = THSTensor_data(t.Handle);
            if (dst == IntPtr.Zero) { t.Dispose(); throw Fail($"tensor '{name}': could not get the tensor's storage"); }
            Buffer.MemoryCopy(basePtr + dataStart + info.Begin, (void*)dst, info.ByteCount, info.ByteCount);
        }
        return t;
    }

    /// <summary>Reads one tensor converted to <paramref name="dtype"/> (e.g. BF16/F16 weights for an F32 model).</summary>
    public Tensor Read(string name, ScalarType dtype)
    {
        var t = Read(name);
        if (t.dtype == dtype) return t;
        using (t) return t.to_type(dtype);
    }

    // The pointer to a CPU tensor's first element (the function TorchSharp itself uses for Tensor.data<T>()).
    [DllImport("LibTorchSharp")]
    private static extern IntPtr THSTensor_data(IntPtr handle);

    public void Dispose()
    {
        if (basePtr is null) return;
        basePtr = null;
        view.SafeMemoryMappedViewHandle.ReleasePointer();
        view.Dispose();
        map.Dispose();
    }

    /// <summary>The byte size a set of tensors takes in a safetensors data area (after dtype conversion).</summary>
    public static long DataBytes(Tensor t, ScalarType? dtype = null) =>
        t.numel() * DTypeSize(DTypeName(StoredType(t, dtype)));

    /// <summary>Floating-point tensors are stored as <paramref name="dtype"/> when given; integer and bool tensors as they are.</summary>
    public static ScalarType StoredType(Tensor t, ScalarType? dtype) =>
        dtype is { } d && t.is_floating_point() ? d : t.dtype;

    /// <summary>
    /// Writes tensors to <paramref name="path"/> atomically (temp file + rename), one tensor at a time. Floating-point
    /// tensors are converted to <paramref name="dtype"/> when given (F32, F16 or BF16).
    /// </summary>
    public static void Save(string path, IEnumerable<(string name, Tensor tensor)> tensors, IReadOnlyDictionary<string, string>? metadata = null,
        ScalarType? dtype = null)
    {
        var list = tensors.ToList();
        var header = new Dictionary<string, object>(StringComparer.Ordinal);
        if (metadata is { Count: > 0 }) header["__metadata__"] = metadata;
        long offset = 0;
        foreach (var (name, t) in list)
        {
            if (header.ContainsKey(name)) throw new ArgumentException($"tensor '{name}' given twice");
            string dt = DTypeName(StoredType(t, dtype));
            long bytes = t.numel() * DTypeSize(dt);
            header[name] = new { dtype = dt, shape = t.shape, data_offsets = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        var json = JsonSerializer.SerializeToUtf8Bytes(header);
        int pad = (8 - json.Length % 8) % 8;                       // align the data area to 8 bytes, padding with spaces
        var headerBytes = new byte[json.Length + pad];
        json.CopyTo(headerBytes, 0);
        for (int i = json.Length; i < headerBytes.Length; i++) headerBytes[i] = (byte)' ';

        string full = System.IO.Path.GetFullPath(path);
        string tmp = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(full)!, $".{System.IO.Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)headerBytes.Length);
                fs.Write(len);
                fs.Write(headerBytes);
                foreach (var (_, t) in list)
                {
                    using var scope = NewDisposeScope();
                    var c = t.detach().cpu().to_type(StoredType(t, dtype)).contiguous();
                    if (c.numel() > 0) fs.Write(c.bytes);
                }
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }
}
