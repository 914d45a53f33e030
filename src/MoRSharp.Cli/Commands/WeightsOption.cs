using MoRSharp.Model;
using TorchSharp;

namespace MoRSharp.Cli.Commands;

/// <summary><c>--weights float32|bfloat16</c>, shared by the decoding commands: weight-only bfloat16
/// (<see cref="MoRForCausalLM.StoreWeightsAs"/>) halves the bytes every generated token reads.</summary>
internal static class WeightsOption
{
    public static CliOption Option { get; } = new("--weights", "T",
        "float32 (default) or bfloat16: hold the projection and embedding weights in bfloat16 for decoding (half the memory and memory traffic; activations, sums and the KV cache stay float32)");

    public static torch.ScalarType Parse(ParsedOptions o) => o.Get("--weights") switch
    {
        null or "float32" or "f32" => torch.ScalarType.Float32,
        "bfloat16" or "bf16" => torch.ScalarType.BFloat16,
        var other => throw new UsageException($"--weights: expected float32 or bfloat16, got '{other}'"),
    };

    /// <summary>The model, with its weights stored as <paramref name="type"/> (a float32 model stays as it is for float32).
    /// Takes ownership: the model is disposed when its weights cannot be stored so.</summary>
    public static MoRForCausalLM Apply(MoRForCausalLM model, torch.ScalarType type)
    {
        try
        {
            if (type != torch.ScalarType.Float32) model.StoreWeightsAs(type);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public static string Name(torch.ScalarType type) => type == torch.ScalarType.BFloat16 ? "bfloat16" : "float32";
}
