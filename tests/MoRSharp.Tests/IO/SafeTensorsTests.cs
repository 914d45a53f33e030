using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using MoRSharp.IO;
using MoRSharp.Tests.Data;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MoRSharp.Tests.IO;

public class SafeTensorsTests(ITestOutputHelper output)
{
    /// <summary>A file from a raw JSON header and data bytes (no validation), to build malformed inputs.</summary>
    private static byte[] Raw(string header, byte[] data, ulong? lengthField = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, lengthField ?? (ulong)h.Length);
        h.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + h.Length);
        return bytes;
    }

    private static SafeTensorsException Bad(TempDir dir, byte[] bytes)
    {
        string path = dir.WriteBytes("bad.safetensors", bytes);
        return Assert.Throws<SafeTensorsException>(() =>
        {
            using var f = new SafeTensorsFile(path);
            foreach (var n in f.Names) f.Read(n).Dispose();
        });
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.eq(b).all().item<bool>();

    private static List<(string, Tensor)> Sample()
    {
        using var gen = new Generator(3);
        return
        [
            ("a.f32", torch.randn([3, 5], generator: gen)),
            ("b.f16", torch.randn([4], generator: gen).to_type(ScalarType.Float16)),
            ("c.bf16", torch.randn([2, 2, 3], generator: gen).to_type(ScalarType.BFloat16)),
            ("d.i64", torch.arange(7, dtype: ScalarType.Int64)),
            ("e.empty", torch.zeros([0, 4])),
        ];
    }

    [Fact]
    public void Roundtrip_keeps_dtypes_and_values_and_converts_on_request()
    {
        using var dir = new TempDir();
        var tensors = Sample();
        string path = dir.File("x.safetensors");
        SafeTensorsFile.Save(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });
        using var f = new SafeTensorsFile(path);
        Assert.Equal(tensors.Select(t => t.Item1), f.Names);
        Assert.Equal("pt", f.Metadata["format"]);
        Assert.Equal(new[] { "F32", "F16", "BF16", "I64", "F32" }, f.Names.Select(n => f.Tensors[n].DType));
        foreach (var (name, t) in tensors)
        {
            using var back = f.Read(name);
            Assert.Equal(t.dtype, back.dtype);
            Assert.True(Same(back, t), name);
        }
        using var asF32 = f.Read("c.bf16", ScalarType.Float32);
        Assert.Equal(ScalarType.Float32, asF32.dtype);
        Assert.True(Same(asF32, tensors[2].Item2.to_type(ScalarType.Float32)));
        Assert.Equal(0, (new FileInfo(path).Length - f.Tensors.Values.Sum(i => i.ByteCount)) % 8);   // the data area starts 8-byte aligned

        // saving as BF16 converts floating tensors, keeps integers
        string p2 = dir.File("y.safetensors");
        SafeTensorsFile.Save(p2, tensors, null, ScalarType.BFloat16);
        using var g = new SafeTensorsFile(p2);
        Assert.Equal(new[] { "BF16", "BF16", "BF16", "I64", "BF16" }, g.Names.Select(n => g.Tensors[n].DType));
        using var a = g.Read("a.f32");
        Assert.True(Same(a, tensors[0].Item2.to_type(ScalarType.BFloat16)));
        foreach (var (_, t) in tensors) t.Dispose();
    }

    [Fact]
    public void Reading_copies_from_the_mapping_without_managed_buffers()
    {
        using var dir = new TempDir();
        string path = dir.File("big.safetensors");
        using (var big = torch.ones([4, 1024, 1024]))                       // 16 MiB
            SafeTensorsFile.Save(path, [("w", big)]);
        using var f = new SafeTensorsFile(path);
        long before = GC.GetAllocatedBytesForCurrentThread();
        using var t = f.Read("w");
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        output.WriteLine($"managed bytes allocated while reading a 16 MiB tensor: {allocated:N0}");
        Assert.True(allocated < 1 << 20, $"{allocated} managed bytes for a 16 MiB tensor");
        Assert.Equal(4L * 1024 * 1024, t.sum().item<float>());
    }

    [Theory]
    [InlineData("tensor 'w': data_offsets [0, 16] run past the data area (8 bytes; truncated?)", """{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8)]
    [InlineData("tensor 'w': data_offsets [4, 20] run past the data area", """{"w":{"dtype":"F32","shape":[4],"data_offsets":[4,20]}}""", 16)]
    [InlineData("tensors 'a' [0, 8) and 'b' [4, 12) overlap", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 16)]
    [InlineData("tensor 'w': unknown dtype 'F8_E4M3'", """{"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}""", 4)]
    [InlineData("tensor 'w': shape [3] × F32 (4 bytes) = 12 bytes, but data_offsets span 16", """{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}""", 16)]
    [InlineData("tensor 'w': data_offsets must be two integers", """{"w":{"dtype":"F32","shape":[1],"data_offsets":["0",4]}}""", 4)]
    [InlineData("tensor 'w': data_offsets [8, 4] are not 0 ≤ begin ≤ end", """{"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}""", 8)]
    [InlineData("tensor 'w': shape entries must be non-negative integers", """{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4)]
    [InlineData("tensor 'w': shape [4294967296, 4294967296] is too large", """{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}""", 4)]
    [InlineData("tensor 'w' appears twice", """{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8)]
    [InlineData("header is not valid JSON", """{"w": {"dtype": "F32", """, 4)]
    [InlineData("header is an array, not a JSON object", """[1, 2]""", 4)]
    [InlineData("tensor 'w': missing string field 'dtype'", """{"w":{"shape":[1],"data_offsets":[0,4]}}""", 4)]
    public void Malformed_headers_are_clear_errors(string expected, string header, int dataBytes)
    {
        using var dir = new TempDir();
        var e = Bad(dir, Raw(header, new byte[dataBytes]));
        output.WriteLine(e.Message);
        Assert.Contains("bad.safetensors: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Truncated_files_and_bad_length_fields_are_clear_errors()
    {
        using var dir = new TempDir();
        var good = Raw("""{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", new byte[16]);
        Assert.Contains("shorter than the 8-byte header length", Bad(dir, good[..5]).Message);
        Assert.Contains("truncated?", Bad(dir, good[..^3]).Message);                                   // data cut short
        Assert.Contains("runs past the end of the file", Bad(dir, good[..20]).Message);                // header cut short
        Assert.Contains("runs past the end of the file", Bad(dir, Raw("{}", [], lengthField: ulong.MaxValue)).Message);
        string missing = Path.Combine(dir.Path, "nope.safetensors");
        Assert.Contains("file not found", Assert.Throws<SafeTensorsException>(() => new SafeTensorsFile(missing)).Message);
    }

    /// <summary>
    /// 2,000 random mutations of a valid file (bytes flipped in the header and the data, truncation, a rewritten length field,
    /// bytes inserted): opening and reading every tensor either works or throws <see cref="SafeTensorsException"/> —
    /// never another exception, a crash or a hang.
    /// </summary>
    [Fact]
    public void Fuzzed_files_never_crash_or_hang()
    {
        using var dir = new TempDir();
        string validPath = dir.File("valid.safetensors");
        SafeTensorsFile.Save(validPath, Sample(), new Dictionary<string, string> { ["format"] = "pt" });
        var valid = File.ReadAllBytes(validPath);
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(valid);
        var rng = new Random(1234);
        var watch = Stopwatch.StartNew();
        int opened = 0, rejected = 0;
        string path = dir.File("fuzz.safetensors");
        for (int i = 0; i < 2000; i++)
        {
            var bytes = valid.ToArray();
            switch (i % 5)
            {
                case 0:                                                   // flip bytes in the header
                    for (int k = rng.Next(1, 4); k > 0; k--) bytes[rng.Next(8, headerEnd)] = (byte)rng.Next(256);
                    break;
                case 1:                                                   // flip bytes anywhere (data included)
                    for (int k = rng.Next(1, 8); k > 0; k--) bytes[rng.Next(bytes.Length)] ^= (byte)(1 << rng.Next(8));
                    break;
                case 2: bytes = bytes[..rng.Next(bytes.Length)]; break;   // truncate
                case 3:                                                   // rewrite the length field
                    BinaryPrimitives.WriteUInt64LittleEndian(bytes, rng.Next(3) switch
                    {
                        0 => (ulong)rng.Next(bytes.Length + 16),
                        1 => (ulong)rng.NextInt64(),
                        _ => (ulong)(headerEnd - 8 + rng.Next(-4, 5)),
                    });
                    break;
                default:                                                  // insert a few bytes
                {
                    int at = rng.Next(bytes.Length);
                    var extra = new byte[rng.Next(1, 5)];
                    rng.NextBytes(extra);
                    bytes = [.. bytes[..at], .. extra, .. bytes[at..]];
                    break;
                }
            }
            File.WriteAllBytes(path, bytes);
            try
            {
                using var f = new SafeTensorsFile(path);
                foreach (var n in f.Names) f.Read(n).Dispose();
                opened++;
            }
            catch (SafeTensorsException) { rejected++; }
            catch (Exception e)
            {
                Assert.Fail($"mutation {i} ({i % 5}): {e.GetType().Name}: {e.Message}");
            }
        }
        output.WriteLine($"2,000 mutations: {opened} opened, {rejected} rejected with SafeTensorsException, {watch.Elapsed.TotalSeconds:F1} s");
        Assert.True(rejected > 500 && opened > 50, "the mutations should exercise both outcomes");
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(60), "fuzzing took too long");
    }

    [Fact]
    public void Sharded_checkpoints_roundtrip_and_the_index_is_validated()
    {
        using var dir = new TempDir();
        var tensors = Sample();
        var written = SafeTensorsCheckpoint.Write(dir.Path, tensors, maxShardBytes: 40);
        Assert.Equal(SafeTensorsCheckpoint.IndexFile, Path.GetFileName(written[^1]));
        Assert.True(written.Count >= 4, $"expected several shards, got {written.Count - 1}");
        Assert.False(File.Exists(dir.File(SafeTensorsCheckpoint.SingleFile)));
        using (var ck = SafeTensorsCheckpoint.Open(dir.Path))
        {
            Assert.Equal(tensors.Count, ck.Tensors.Count);
            foreach (var (name, t) in tensors)
            {
                using var back = ck.Read(name);
                Assert.True(Same(back, t), name);
            }
        }
        var index = JsonNode.Parse(File.ReadAllText(dir.File(SafeTensorsCheckpoint.IndexFile)))!;
        long total = tensors.Sum(t => SafeTensorsFile.DataBytes(t.Item2));
        Assert.Equal(total, index["metadata"]!["total_size"]!.GetValue<long>());

        void Tamper(Action<JsonObject> change, string expected)
        {
            var copy = JsonNode.Parse(index.ToJsonString())!.AsObject();
            change(copy["weight_map"]!.AsObject());
            File.WriteAllText(dir.File(SafeTensorsCheckpoint.IndexFile), copy.ToJsonString());
            var e = Assert.Throws<SafeTensorsException>(() => SafeTensorsCheckpoint.Open(dir.Path).Dispose());
            output.WriteLine(e.Message);
            Assert.Contains(expected, e.Message);
        }
        Tamper(m => m["a.f32"] = "model-00009-of-00009.safetensors", "shard 'model-00009-of-00009.safetensors' listed in weight_map does not exist");
        Tamper(m => m["a.f32"] = "../x.safetensors", "is not a plain file name in the same folder");
        Tamper(m => m["zzz"] = m["a.f32"]!.GetValue<string>(), "weight_map puts tensor 'zzz' in");
        Tamper(m => m.Remove("b.f16"), "tensor 'b.f16' is not listed in");   // b shares its shard with c

        // writing again as one file replaces the shards
        SafeTensorsCheckpoint.Write(dir.Path, tensors);
        Assert.Empty(Directory.GetFiles(dir.Path, "model-*"));
        Assert.False(File.Exists(dir.File(SafeTensorsCheckpoint.IndexFile)));
        foreach (var (_, t) in tensors) t.Dispose();
    }
}
