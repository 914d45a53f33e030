using MoRSharp.Caching;
using MoRSharp.Kernels;
using MoRSharp.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Kernels;

/// <summary>
/// <see cref="KvCache.AttendDecode"/> (the decode attention kernel) computes what the tensor path computes — the cache
/// written by <see cref="KvCache.Update"/> and softmax(q·Kᵀ/√hd)·V over the row's entries — for each token against its own
/// slot and length, with the same cache bookkeeping.
/// </summary>
public class DecodeAttentionTests
{
    private static bool KernelsAvailable()
    {
        TorchRuntime.Initialize();
        return SmallGemm.IsEnabled;
    }

    // Expert-choice MoR-3, one block layer, recursion-wise cache: slots U0, r1, r2, r3, U2 (r3 holds a third of the context).
    private static KvCache Cache(int hidden, int heads, int kvHeads, int rows = 4, int context = 30, string kv = "recursion_wise")
    {
        var config = TestConfigs.Tiny("expert", "middle_cycle", numRecursion: 3, blockSize: 1, hidden: hidden, heads: heads, kvHeads: kvHeads, context: context);
        config.MoR!.KvCache = kv;
        return new KvCache(config, rows, context);
    }

    // Fills (row, slot) with `count` random entries through the tensor path, identically in every cache given.
    private static void Prefill(Generator gen, int row, int slot, int count, int kvHeads, int hd, params KvCache[] caches)
    {
        var k = randn(1, kvHeads, count, hd, generator: gen);
        var v = randn(1, kvHeads, count, hd, generator: gen);
        foreach (var c in caches) c.Update(slot, [row], k, v, [count], write: true);
    }

    // softmax(q Kᵀ/√hd) V for one token: q [H, hd], keys/values [n_kv, L, hd] → [H, hd] (in float64).
    private static Tensor Reference(Tensor q, Tensor keys, Tensor values)
    {
        long heads = q.size(0), kvHeads = keys.size(0), hd = q.size(1);
        var k = keys.to_type(ScalarType.Float64).repeat_interleave(heads / kvHeads, dim: 0);   // [H, L, hd]
        var v = values.to_type(ScalarType.Float64).repeat_interleave(heads / kvHeads, dim: 0);
        var scores = q.to_type(ScalarType.Float64).unsqueeze(1).matmul(k.transpose(1, 2)) / Math.Sqrt(hd);   // [H, 1, L]
        return scores.softmax(-1).matmul(v).squeeze(1);                                                      // [H, hd]
    }

    [Theory]
    [InlineData(64, 4, 2)]     // hd 16: the 8-wide loops; two query heads per KV head
    [InlineData(256, 4, 2)]    // hd 64: the 32-column loop
    [InlineData(48, 4, 1)]     // hd 12: scalar tails; all query heads share one KV head
    [InlineData(96, 3, 3)]     // hd 32, no grouping
    public void Tokens_in_different_slots_and_lengths_match_the_tensor_path(int hidden, int heads, int kvHeads)
    {
        if (!KernelsAvailable()) return;
        using var scope = NewDisposeScope();
        using var gen = new Generator(5);
        using var kernel = Cache(hidden, heads, kvHeads);
        using var reference = Cache(hidden, heads, kvHeads);
        int hd = hidden / heads;
        // row 0: 7 entries in slot 1; row 2: 0 entries in slot 1 (its first); row 3: 10 = the capacity of slot 3 (r3) → growth
        Prefill(gen, 0, 1, 7, kvHeads, hd, kernel, reference);
        Prefill(gen, 3, 3, 10, kvHeads, hd, kernel, reference);
        Prefill(gen, 1, 3, 3, kvHeads, hd, kernel, reference);
        Assert.Equal(10, kernel.Capacity(3));
        DecodeToken[] tokens = [new(1, 2, true, 0), new(1, 0, true, 7), new(3, 3, true, 10), new(3, 1, true, 3)];
        int n = tokens.Length;
        var q = randn(n, heads, 1, hd, generator: gen);
        var k = randn(n, kvHeads, 1, hd, generator: gen);
        var v = randn(n, kvHeads, 1, hd, generator: gen);

        using var _ = no_grad();
        var output = kernel.AttendDecode(tokens, q, k, v);                                           // [n, H, 1, hd]
        Assert.Equal(new long[] { n, heads, 1, hd }, output.shape);
        double worst = 0;
        for (int i = 0; i < n; i++)
        {
            var t = tokens[i];
            var (keys, values, _) = reference.Update(t.Slot, [t.Row], k[i].unsqueeze(0), v[i].unsqueeze(0), [1], write: true);
            long length = reference.Length(t.Row, t.Slot);
            var expected = Reference(q[i, .., 0], keys[0].narrow(1, 0, length), values[0].narrow(1, 0, length));
            worst = Math.Max(worst, (output[i, .., 0].to_type(ScalarType.Float64) - expected).abs().max().item<double>());
            Assert.Equal(reference.Length(t.Row, t.Slot), kernel.Length(t.Row, t.Slot));
        }
        Console.WriteLine($"decode attention vs tensor path (hd {hd}): max |diff| {worst:E2}");
        Assert.True(worst < 1e-5, $"max |diff| {worst}");
        Assert.Equal(reference.Capacity(3), kernel.Capacity(3));
        Assert.True(kernel.Capacity(3) > 10, "slot r3 should have grown");

        // The written entries are where the tensor path put them (the next call reads them).
        foreach (var t in tokens)
        {
            var (kk, vv, _) = kernel.Update(t.Slot, [t.Row], k[0].unsqueeze(0), v[0].unsqueeze(0), [0], write: true);
            var (rk, rv, _) = reference.Update(t.Slot, [t.Row], k[0].unsqueeze(0), v[0].unsqueeze(0), [0], write: true);
            long length = reference.Length(t.Row, t.Slot);
            Assert.True(kk.narrow(2, 0, length).eq(rk.narrow(2, 0, length)).all().item<bool>());
            Assert.True(vv.narrow(2, 0, length).eq(rv.narrow(2, 0, length)).all().item<bool>());
        }
    }

    [Fact]
    public void A_read_only_slot_attends_up_to_the_query_position_and_refuses_past_its_entries()
    {
        if (!KernelsAvailable()) return;
        using var scope = NewDisposeScope();
        using var gen = new Generator(8);
        using var cache = Cache(64, 4, 2, kv: "shared");
        Prefill(gen, 1, 1, 12, 2, 16, cache);
        var q = randn(1, 4, 1, 16, generator: gen);
        var k = randn(1, 2, 1, 16, generator: gen);
        using var _ = no_grad();
        var output = cache.AttendDecode([new DecodeToken(1, 1, false, 6)], q, k, k);
        var (keys, values, _) = cache.Update(1, [1], k, k, [0], write: true);
        var expected = Reference(q[0, .., 0], keys[0].narrow(1, 0, 7), values[0].narrow(1, 0, 7));
        Assert.True((output[0, .., 0].to_type(ScalarType.Float64) - expected).abs().max().item<double>() < 1e-5);
        Assert.Equal(12, cache.Length(1, 1));                                    // nothing written

        var e = Assert.Throws<InvalidOperationException>(() => cache.AttendDecode([new DecodeToken(1, 1, false, 12)], q, k, k));
        Assert.Contains("position 12", e.Message);
        Assert.Throws<ArgumentException>(() => cache.AttendDecode([new DecodeToken(1, 1, false, 3), new DecodeToken(2, 1, false, 3)],
            cat([q, q]), cat([k, k]), cat([k, k])));                              // one row twice in a call
    }

    [Fact]
    public void A_token_gets_the_same_bits_alone_in_a_batch_and_on_one_or_two_threads()
    {
        if (!KernelsAvailable()) return;
        using var scope = NewDisposeScope();
        using var gen = new Generator(9);
        int rows = 8, heads = 8, kvHeads = 2, hidden = 512, hd = 64;
        var caches = Enumerable.Range(0, 3).Select(_ => Cache(hidden, heads, kvHeads, rows, context: 64)).ToArray();
        for (int r = 0; r < rows; r++) Prefill(gen, r, 0, 50 + r, kvHeads, hd, caches);       // enough work to split over threads
        var tokens = Enumerable.Range(0, rows).Select(r => new DecodeToken(0, r, true, 50 + r)).ToArray();
        var q = randn(rows, heads, 1, hd, generator: gen);
        var k = randn(rows, kvHeads, 1, hd, generator: gen);
        var v = randn(rows, kvHeads, 1, hd, generator: gen);
        using var _ = no_grad();
        int threads = get_num_threads();
        try
        {
            var batched = caches[0].AttendDecode(tokens, q, k, v);
            set_num_threads(1);
            var oneThread = caches[1].AttendDecode(tokens, q, k, v);
            var alone = caches[2].AttendDecode([tokens[5]], q[5..6], k[5..6], v[5..6]);
            Assert.True(batched.eq(oneThread).all().item<bool>());
            Assert.True(batched[5..6].eq(alone).all().item<bool>());
        }
        finally
        {
            set_num_threads(threads);
        }
        foreach (var c in caches) c.Dispose();
    }
}
