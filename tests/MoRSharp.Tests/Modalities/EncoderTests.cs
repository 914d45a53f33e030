using MoRSharp.Config;
using MoRSharp.Model;
using MoRSharp.Modalities;
using MoRSharp.Modalities.Audio;
using MoRSharp.Modalities.Image;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Modalities;

/// <summary>Patch/frame tokenisation shapes, 2-D positions, the bidirectional MoR encoder and its accounting.</summary>
public class EncoderTests
{
    [Theory]
    [InlineData(4, 49)]
    [InlineData(7, 16)]
    public void PatchEmbedding_CutsRowMajorPatches(int patch, int tokens)
    {
        MoRSharp.Native.TorchRuntime.Initialize();
        var cfg = new ImageFrontEndConfig { PatchSize = patch };
        using var embed = new PatchEmbedding(cfg, 8);
        using (no_grad())
        {
            foreach (var (name, p) in embed.named_parameters()) { if (name.EndsWith("weight")) p.fill_(1.0); else p.zero_(); }
        }
        int g = 28 / patch;
        using var img = zeros(2, 1, 28, 28);
        img[0, 0, 13, 27] = tensor(1f);                                  // row 13, column 27 → patch (13/p, 27/p)
        using var outT = embed.forward(img);
        Assert.Equal(new long[] { 2, tokens, 8 }, outT.shape);
        int hot = 13 / patch * g + 27 / patch;
        var sums = outT.sum([2L]);
        for (int t = 0; t < tokens; t++) Assert.Equal(t == hot ? 8f : 0f, sums[0, t].item<float>(), 4);
        Assert.Equal(0f, sums[1].abs().sum().item<float>());
        Assert.Equal(new[] { "projection.weight", "projection.bias" }, embed.named_parameters().Select(p => p.name).ToArray());
        Assert.Throws<ArgumentException>(() => embed.forward(zeros(2, 1, 32, 32)));
    }

    [Fact]
    public void FrameEmbedding_OneTokenPerFrame()
    {
        MoRSharp.Native.TorchRuntime.Initialize();
        var cfg = new AudioFrontEndConfig();
        using var embed = new FrameEmbedding(cfg, 16);
        using var frames = randn(3, cfg.MaxFrames, cfg.NumMelBins);
        using var outT = embed.forward(frames);
        Assert.Equal(new long[] { 3, 64, 16 }, outT.shape);
        Assert.Throws<ArgumentException>(() => embed.forward(randn(3, 10, cfg.NumMelBins)));
    }

    [Fact]
    public void ClassToken_IsPrependedAndNamedLikeViT()
    {
        MoRSharp.Native.TorchRuntime.Initialize();
        var enc = ModalityTestUtil.ImagePatch7();
        enc.ClassToken = true;
        enc.LearnedPositions = true;
        using var embeddings = new EncoderEmbeddings(enc, 8);
        var names = embeddings.named_parameters().Select(p => p.name).ToHashSet();
        Assert.Contains("patch_embeddings.projection.weight", names);
        Assert.Contains("cls_token", names);
        Assert.Contains("position_embeddings", names);
        using var tokens = embeddings.forward(randn(2, 1, 28, 28));
        Assert.Equal(new long[] { 2, 17, 8 }, tokens.shape);
        Assert.Equal(17, enc.Tokens);
    }

    [Fact]
    public void GridRope_ScoresDependOnlyOnRowAndColumnOffsets()
    {
        MoRSharp.Native.TorchRuntime.Initialize();
        const int hd = 16, g = 5;
        using var rope = RopeTables.Grid(hd, g, g, 100.0, classToken: true);
        using var gen = new Generator(3);
        using var q = randn(1, 1, 1, hd, generator: gen);
        using var k = randn(1, 1, 1, hd, generator: gen);
        double Score(int qr, int qc, int kr, int kc)
        {
            using var pq = tensor(new long[] { 1 + qr * g + qc }).view(1, 1);
            using var pk = tensor(new long[] { 1 + kr * g + kc }).view(1, 1);
            var (cq, sq) = rope.At(pq, ScalarType.Float32);
            var (ck, sk) = rope.At(pk, ScalarType.Float32);
            return (RotaryEmbedding.Apply(q, cq, sq) * RotaryEmbedding.Apply(k, ck, sk)).sum().item<float>();
        }
        Assert.Equal(Score(0, 0, 2, 1), Score(2, 3, 4, 4), 4);          // same offset (2, 1)
        Assert.Equal(Score(1, 4, 3, 0), Score(2, 4, 4, 0), 4);          // same offset (2, −4)
        Assert.NotEqual(Score(0, 0, 2, 1), Score(0, 0, 1, 2), 3);       // rows and columns are told apart
        var (c0, s0) = rope.At(zeros(1, 1, dtype: ScalarType.Int64), ScalarType.Float32);   // class token: no rotation
        Assert.Equal(1f, c0.min().item<float>(), 6);
        Assert.Equal(0f, s0.abs().max().item<float>(), 6);
        Assert.Throws<ConfigException>(() => RopeTables.Grid(6, g, g, 100.0, false));
    }

    [Fact]
    public void Encoder_RunsExpertChoiceTopKPerExample()
    {
        var enc = EncoderConfig.Default(ClassificationTask.ImageClassification);   // 49 patches
        using var model = new MoRForClassification(ModalityTestUtil.TinyStack(enc), enc, seed: 1);
        model.eval();
        using var _ = no_grad();
        using var gen = new Generator(7);
        using var x = randn(3, 1, 28, 28, generator: gen);
        var outT = model.Forward(x);
        Assert.Equal(new long[] { 3, 10 }, outT.Logits.shape);
        var depth = model.TokenDepth(outT.Routing)!;
        Assert.Equal(new long[] { 3, 49 }, depth.shape);
        // capacities 1, 2/3, 1/3 of 49 tokens: k = 49, 32, 16 per example → depths 1:17, 2:16, 3:16 in every example
        Assert.Equal(new long[] { 3 * 49, 3 * 32, 3 * 16 }, outT.Routing.TokensPerRecursion);
        for (int b = 0; b < 3; b++)
            Assert.Equal(new long[] { 17, 16, 16 }, new[] { 1, 2, 3 }.Select(d => depth[b].eq(d).sum().item<long>()).ToArray());
        // top-k is per example: an example's logits do not depend on the rest of the batch
        var alone = model.Forward(x[1..2]).Logits;
        Assert.True(alone.allclose(outT.Logits[1..2], rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void Encoder_AttentionIsBidirectional()
    {
        var enc = new EncoderConfig { Task = "audio-classification", Audio = new AudioFrontEndConfig { MaxFrames = 8 } };
        var config = ModalityTestUtil.TinyStack(enc, "tiny-vanilla");
        using var model = new MoRForClassification(config, enc, seed: 2);
        using var _ = no_grad();
        using var gen = new Generator(5);
        using var x = randn(1, 8, enc.Audio.NumMelBins, generator: gen);
        using var y = x.clone();
        y[0, 7] = y[0, 7] + 1.0f;                                       // change only the last frame
        var (h1, _) = model.Model.Forward(x);
        var (h2, _) = model.Model.Forward(y);
        Assert.True((h1[0, 0] - h2[0, 0]).abs().max().item<float>() > 1e-4, "the first frame must see the last one");
    }

    [Fact]
    public void Encoder_TokenChoice_PaddingStaysInvisible()
    {
        // Two images in one batch get depth sets of different sizes, so recursion r pads the smaller one; under bidirectional
        // attention each image must still come out exactly as it does alone (where nothing is padded).
        var enc = ModalityTestUtil.ImagePatch7();
        var config = ModalityTestUtil.TinyStack(enc, "tiny-mor-token");
        using var model = new MoRForClassification(config, enc, seed: 3);
        model.eval();
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var gen = new Generator(11);
        using (no_grad())   // a sharper random router, so that tokens (and the two images) spread over depths
            foreach (var (name, p) in model.named_parameters()) if (name.StartsWith("model.router.")) p.normal_(0, 2.0, gen);
        var x = rand(2, 1, 28, 28, generator: gen);
        x[1, 0, ..14] = x[1, 0, ..14] * 0;                                                         // the second image: top half black
        var (both, stats) = model.Model.Forward(x);
        var depth = stats.Depth!;                                                                     // [2, N]
        bool padded = Enumerable.Range(1, config.Recursion.NumRecursion - 1)
            .Any(r => depth[0].gt(r).sum().item<long>() != depth[1].gt(r).sum().item<long>());
        Assert.True(padded, "the two images should reach some recursion with different token counts: " + string.Join(" / ", Enumerable.Range(0, 2).Select(i => string.Join(",", Enumerable.Range(0, config.Recursion.NumRecursion).Select(r => depth[i].gt(r).sum().item<long>())))));
        for (int i = 0; i < 2; i++)
        {
            var (alone, _) = model.Model.Forward(x[i..(i + 1)]);
            double diff = (both[i..(i + 1)] - alone).abs().max().item<float>();
            Assert.True(diff < 1e-4, $"image {i}: batched output differs from its own by {diff}");
        }
    }

    [Theory]
    [InlineData("tiny-vanilla", false)]
    [InlineData("tiny-recursive", true)]
    [InlineData("tiny-mor-expert", true)]
    [InlineData("tiny-mor-expert", false)]
    public void Accounting_CountsEveryParameterOnce(string preset, bool audio)
    {
        var enc = audio ? EncoderConfig.Default(ClassificationTask.AudioClassification) : ModalityTestUtil.ImagePatch7();
        enc.ClassToken = audio;
        enc.LearnedPositions = !audio;
        var config = ModalityTestUtil.TinyStack(enc, preset);
        using var model = new MoRForClassification(config, enc);
        long counted = model.parameters().Sum(p => p.numel());
        var acc = EncoderAccounting.Compute(config, enc);
        Assert.Equal(counted, acc.UniqueParams);
        // bidirectional attention costs more than causal at the same context; the encoder's count uses it
        var causal = ModelAccounting.Compute(config, enc.Tokens);
        Assert.True(acc.Stack.FlopsPerTokenExact > causal.FlopsPerTokenExact);
        Assert.Equal(acc.FrontEndFlops + (acc.Stack.FlopsPerTokenExact - 2.0 * 64 * 10) * enc.Tokens + 2.0 * 64 * 10, acc.FlopsPerExample, 6);
    }
}
