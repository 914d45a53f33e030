using MoRSharp.Model;
using MoRSharp.Native;
using MoRSharp.Routing;
using TorchSharp;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Model;

/// <summary>The inference-only fast paths (swapped products, in-place residuals, the rolled RoPE) compute what the plain paths compute.</summary>
public class InferencePathTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 3)]
    [InlineData(4, 16)]     // 64 rows: still the swapped path
    [InlineData(5, 13)]     // 65 rows: linear again
    public void Swapped_product_equals_linear(int batch, int length)
    {
        TorchRuntime.Initialize();
        using var scope = NewDisposeScope();
        using var gen = new Generator(5);
        var layer = nn.Linear(48, 80, hasBias: false);
        var x = randn(batch, length, 48, generator: gen);
        var expected = nn.functional.linear(x, layer.weight!);
        using (no_grad())
        {
            var viaForward = InferenceLinear.Forward(layer, x);
            var swapped = InferenceLinear.Swapped(x, layer.weight!);
            Assert.Equal(expected.shape, viaForward.shape);
            Assert.Equal(expected.shape, swapped.shape);
            Assert.True((viaForward - expected).abs().max().item<float>() < 1e-5);
            Assert.True((swapped - expected).abs().max().item<float>() < 1e-5);
        }
    }

    [Fact]
    public void With_autograd_the_projection_keeps_its_gradient()
    {
        TorchRuntime.Initialize();
        using var scope = NewDisposeScope();
        var layer = nn.Linear(16, 8, hasBias: false);
        var x = randn(1, 1, 16);
        InferenceLinear.Forward(layer, x).sum().backward();
        Assert.NotNull(layer.weight!.grad);
        Assert.True((layer.weight.grad! - x.view(1, 16).expand(8, 16)).abs().max().item<float>() < 1e-6);
    }

    [Fact]
    public void Rolled_rope_equals_the_rotate_half_formula()
    {
        TorchRuntime.Initialize();
        using var scope = NewDisposeScope();
        const int hd = 16;
        using var rope = new RotaryEmbedding(hd, 64, 10000.0);
        var positions = tensor(new long[] { 0, 5, 17, 63 }).view(1, 4);
        var (cos, signedSin) = rope.At(positions, ScalarType.Float32);
        var x = randn(1, 3, 4, hd);
        // HF Llama: x·cos + rotate_half(x)·sin, rotate_half(x) = cat(−x₂, x₁), with the sine computed here independently
        var invFreq = 1.0 / torch.pow(10000.0, torch.arange(0, hd, 2, dtype: ScalarType.Float64) / hd);
        var angles = torch.outer(positions.view(-1).to_type(ScalarType.Float64), invFreq);
        var sin = torch.cat([angles, angles], -1).sin().to_type(ScalarType.Float32).view(1, 1, 4, hd);
        var rotated = torch.cat([-x[.., .., .., (hd / 2)..], x[.., .., .., ..(hd / 2)]], -1);
        var expected = x * cos + rotated * sin;
        Assert.True((RotaryEmbedding.Apply(x, cos, signedSin) - expected).abs().max().item<float>() < 1e-5);
    }

    [Fact]
    public void Inference_forward_equals_the_autograd_forward()
    {
        // no-grad runs in-place residuals, in-place SwiGLU and swapped products; the logits must not change
        using var model = new MoRForCausalLM(TestConfigs.Tiny("expert", "middle_cycle"), 41);
        model.eval();
        using var scope = NewDisposeScope();
        var ids = ModelTestUtil.RandomIds(2, 6, model.Config.VocabSize, 42);
        var withGrad = model.Forward(ids, RoutingMode.Causal).Logits.detach();
        Tensor noGrad;
        using (no_grad()) noGrad = model.Forward(ids, RoutingMode.Causal).Logits;
        double diff = (withGrad - noGrad).abs().max().item<float>();
        Assert.True(diff < 1e-4, $"no-grad logits differ by {diff}");
        using (no_grad())
        {
            var one = model.Forward(ids[0..1, 0..1], RoutingMode.Causal).Logits;   // a single row: the padded swapped product
            Assert.True((one - withGrad[0..1, 0..1]).abs().max().item<float>() < 1e-4);
        }
    }

    [Fact]
    public void Freed_native_memory_is_kept_for_reuse_on_linux()
    {
        TorchRuntime.Initialize();
        if (!OperatingSystem.IsLinux()) return;
        bool optedOut = Environment.GetEnvironmentVariable(NativeAllocator.Variable)?.Trim() is "0" or "false";
        Assert.Equal(!optedOut, NativeAllocator.KeepsFreedMemory);
        Assert.Contains(optedOut ? "returned to the OS" : "kept for reuse", TorchRuntime.Describe());
    }
}
