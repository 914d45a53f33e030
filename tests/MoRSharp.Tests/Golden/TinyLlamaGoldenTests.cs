using System.Text.Json;
using MoRSharp.Config;
using MoRSharp.IO;
using MoRSharp.Model;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Golden;

/// <summary>llm.c-style golden test: our Llama forward against logits from an independent numpy implementation.</summary>
public class TinyLlamaGoldenTests(ITestOutputHelper output)
{
    [Fact]
    public void Logits_match_independent_reference()
    {
        string dir = SharedData.Path("golden/tiny-llama");
        var config = ConfigJson.Load(System.IO.Path.Combine(dir, "config.json"));
        using var golden = JsonDocument.Parse(File.ReadAllText(System.IO.Path.Combine(dir, "golden.json")));
        var ids = golden.RootElement.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        var expectedBytes = File.ReadAllBytes(System.IO.Path.Combine(dir, "logits.f32"));
        var expected = new float[expectedBytes.Length / 4];
        Buffer.BlockCopy(expectedBytes, 0, expected, 0, expectedBytes.Length);

        using var scope = NewDisposeScope();
        using var model = new MoRForCausalLM(config);
        ModelWeights.Load(model, System.IO.Path.Combine(dir, "model.safetensors"));
        model.eval();
        using var _ = no_grad();
        var logits = model.Forward(tensor(ids).unsqueeze(0)).Logits.squeeze(0);     // [16, 512]
        var want = tensor(expected).view(ids.Length, config.VocabSize);
        double maxDiff = (logits - want).abs().max().item<float>();
        output.WriteLine($"max |logits - golden| = {maxDiff:E3} over {logits.numel()} values");
        Assert.True(maxDiff < 1e-4, $"max abs difference {maxDiff} ≥ 1e-4");
    }
}
