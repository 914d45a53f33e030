using MoRSharp.Kernels;
using MoRSharp.Model;
using MoRSharp.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Kernels;

/// <summary>The AVX2 decode kernels compute what libtorch computes, for every row count and shape edge, on any thread count.</summary>
public class SmallGemmTests
{
    // The kernels need AVX2 and FMA (and MORSHARP_DECODE_KERNELS unset); xunit 2 has no run-time skip, so without them
    // these tests return early (the model then uses libtorch's products, which the other tests cover).
    private static bool KernelsAvailable()
    {
        TorchRuntime.Initialize();
        return SmallGemm.IsEnabled;
    }

    [Theory]
    [InlineData(1, 256, 192)]
    [InlineData(3, 256, 5)]       // odd rows, fewer outputs than a thread's share
    [InlineData(4, 64, 1)]        // a single output row (a router-sized product)
    [InlineData(9, 20, 33)]       // d not a multiple of 8: the scalar tail; 8+ rows: the three-weight-row kernel
    [InlineData(64, 13, 1000)]    // the most rows accepted; d smaller than one vector
    [InlineData(17, 576, 1536)]
    public void Product_equals_linear(int m, int d, int n)
    {
        if (!KernelsAvailable()) return;
        using var scope = NewDisposeScope();
        using var gen = new Generator(11);
        var x = randn(m, d, generator: gen);
        var w = randn(n, d, generator: gen) * 0.1f;
        var expected = nn.functional.linear(x, w);
        using var _ = no_grad();
        Assert.True(SmallGemm.Accepts(x, w));
        var y = SmallGemm.Matmul(x, w);
        Assert.Equal(expected.shape, y.shape);
        Assert.True(y.is_contiguous());
        double diff = (y - expected).abs().max().item<float>();
        Assert.True(diff < 1e-4, $"max |difference| {diff}");
    }

    [Fact]
    public void A_row_gets_the_same_bits_alone_in_any_batch_and_on_any_thread_count()
    {
        if (!KernelsAvailable()) return;
        using var scope = NewDisposeScope();
        using var gen = new Generator(3);
        var x = randn(12, 100, generator: gen);
        var w = randn(300, 100, generator: gen);
        using var _ = no_grad();
        int threads = torch.get_num_threads();
        try
        {
            // 9 to 12 rows: four-row blocks with a last block of 1, 2, 3 or 4 rows in the three-weight-row kernels, and the
            // one-weight-row kernels for the weight rows left over; a row alone runs the single-row dot product.
            for (int m = 9; m <= 12; m++)
            {
                var xm = x.narrow(0, 0, m);
                torch.set_num_threads(threads);
                var batched = SmallGemm.Matmul(xm, w);
                torch.set_num_threads(1);
                var single = SmallGemm.Matmul(xm, w);
                Assert.True(Same(batched, single), $"{m} rows: 1 thread and the default thread count differ");
                for (int i = 0; i < m; i++)
                    Assert.True(Same(SmallGemm.Matmul(x.narrow(0, i, 1), w), batched.narrow(0, i, 1)), $"{m} rows: row {i} alone differs from row {i} in the batch");
            }
        }
        finally
        {
            torch.set_num_threads(threads);
        }
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && (a - b).abs().max().item<float>() == 0f;

    [Fact]
    public void Norm_then_three_products_equals_RmsNorm_then_linear()
    {
        if (!KernelsAvailable()) return;
        using var scope = NewDisposeScope();
        using var gen = new Generator(4);
        var norm = new RmsNorm(72, 1e-5);
        using (no_grad()) norm.Weight.copy_(rand(72, generator: gen) + 0.5f);
        var x = randn(2, 3, 72, generator: gen) * 3f;
        var ws = new[] { randn(72, 72, generator: gen), randn(24, 72, generator: gen), randn(24, 72, generator: gen) };
        var normed = norm.forward(x);
        using var _ = no_grad();
        var ys = SmallGemm.Project(x, norm.Weight, norm.Eps, ws);
        Assert.Equal(3, ys.Length);
        for (int s = 0; s < 3; s++)
        {
            var expected = nn.functional.linear(normed, ws[s]);
            Assert.Equal(expected.shape, ys[s].shape);
            double diff = (ys[s] - expected).abs().max().item<float>();
            Assert.True(diff < 1e-4, $"weight {s}: max |difference| {diff}");
        }
    }

    [Fact]
    public void Residual_and_SwiGLU_epilogues_equal_their_tensor_formulas()
    {
        if (!KernelsAvailable()) return;
        using var scope = NewDisposeScope();
        using var gen = new Generator(8);
        var x = randn(5, 1, 40, generator: gen);
        var gate = randn(90, 40, generator: gen) * 0.3f;
        var up = randn(90, 40, generator: gen) * 0.3f;
        var down = randn(40, 90, generator: gen) * 0.3f;
        var residual = randn(5, 1, 90, generator: gen);
        var norm = new RmsNorm(40, 1e-6);
        using var _ = no_grad();

        var added = SmallGemm.ProjectAdd(x, gate, residual);
        var expectedAdd = nn.functional.linear(x, gate) + residual;
        Assert.True((added - expectedAdd).abs().max().item<float>() < 1e-4);

        var act = SmallGemm.SwiGlu(x, norm.Weight, norm.Eps, gate, up);
        var h = norm.forward(x);
        var expectedAct = nn.functional.silu(nn.functional.linear(h, gate)) * nn.functional.linear(h, up);
        Assert.Equal(expectedAct.shape, act.shape);
        Assert.True((act - expectedAct).abs().max().item<float>() < 1e-4);

        Assert.Throws<ArgumentException>(() => SmallGemm.ProjectAdd(x, gate, residual.narrow(2, 0, 89)));
        Assert.True(down.shape[1] == act.shape[^1] && SmallGemm.Accepts(act, down));
    }

    [Fact]
    public void Autograd_more_rows_and_other_dtypes_are_left_to_libtorch()
    {
        if (!KernelsAvailable()) return;
        using var scope = NewDisposeScope();
        var w = randn(8, 16);
        Assert.False(SmallGemm.Accepts(randn(2, 16), w));                       // autograd on
        using var _ = no_grad();
        Assert.True(SmallGemm.Accepts(randn(2, 16), w));
        Assert.False(SmallGemm.Accepts(randn(65, 16), w));                      // more than MaxRows rows
        Assert.False(SmallGemm.Accepts(randn(2, 16).to_type(ScalarType.BFloat16), w));
        Assert.False(SmallGemm.Accepts(randn(2, 16), randn(16, 8).t()));         // a transposed (non-contiguous) weight
        Assert.False(SmallGemm.Accepts(randn(2, 15), w));                       // width mismatch
    }

    [Fact]
    public void A_held_team_computes_the_same_bits_and_passes_exceptions_to_the_caller()
    {
        if (!KernelsAvailable()) return;
        using var scope = NewDisposeScope();
        using var gen = new Generator(21);
        var x = randn(6, 96, generator: gen);
        var w = randn(700, 96, generator: gen);
        using var _ = no_grad();
        var outside = SmallGemm.Matmul(x, w);
        Tensor? inside = null, nested = null, large = null;
        int owner = Environment.CurrentManagedThreadId, ranOn = -1;
        bool acceptsLarge = false;
        var many = randn(100, 96, generator: gen);
        KernelThreads.Hold(() =>
        {
            ranOn = Environment.CurrentManagedThreadId;
            inside = SmallGemm.Matmul(x, w);
            KernelThreads.Hold(() => nested = SmallGemm.Matmul(x, w));   // nested: just runs
            acceptsLarge = SmallGemm.Accepts(many, w);
            if (acceptsLarge) large = SmallGemm.Matmul(many, w);
        });
        Assert.Equal(owner, ranOn);                                       // the body runs on the caller's thread (its scopes, grad mode)
        Assert.True(Same(outside, inside!) && Same(outside, nested!));
        // 100 rows: libtorch's own products inside a held team would run on one thread, so the kernels take them there
        Assert.False(SmallGemm.Accepts(many, w));
        Assert.Equal(KernelThreads.UsesOpenMpTeam && get_num_threads() > 1, acceptsLarge);
        if (large is not null) Assert.True((large - nn.functional.linear(many, w)).abs().max().item<float>() < 1e-3);
        var e = Assert.Throws<InvalidOperationException>(() => KernelThreads.Hold(() => throw new InvalidOperationException("from the body")));
        Assert.Equal("from the body", e.Message);
        Assert.True(Same(outside, SmallGemm.Matmul(x, w)));              // the team is usable after a failed body
    }
}
