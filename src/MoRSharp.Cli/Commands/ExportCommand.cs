using MoRSharp.IO;
using MoRSharp.Native;

namespace MoRSharp.Cli.Commands;

/// <summary>
/// <c>mor export</c>: a model folder written again in the Hugging Face <c>LlamaForCausalLM</c> layout — another dtype,
/// shards, or (for a recursive model without routing) unrolled into a plain Llama that Hugging Face transformers runs as is.
/// </summary>
public sealed class ExportCommand : ICommand
{
    public string Name => "export";
    public string Summary => "Write a model folder in the Hugging Face Llama layout (dtype, shards, or unrolled recursions).";
    public IReadOnlyList<string> Usage { get; } = ["mor export --model DIR --out DIR [--dtype float32|bfloat16|float16] [--max-shard-size SIZE] [--unroll]"];

    public IReadOnlyList<CliOption> Options { get; } =
    [
        new("--model", "DIR", "the model folder (ours or Hugging Face)"),
        new("--out", "DIR", "the new folder (must not exist or be empty)"),
        new("--dtype", "T", "float32 (default) | bfloat16 | float16 for the weights"),
        new("--max-shard-size", "SIZE", "shards of at most SIZE (e.g. 2GB; default 5GB) with model.safetensors.index.json"),
        new("--unroll", null, "a recursive model without routing: write every unrolled layer, giving a plain Llama (architectures LlamaForCausalLM)"),
        new("--threads", "N", "torch threads"),
    ];

    public int Execute(ParsedOptions o, TextWriter stdout, TextWriter stderr)
    {
        string from = o.Get("--model") ?? throw new UsageException("--model DIR is required");
        string to = o.Get("--out") ?? throw new UsageException("--out DIR is required");
        var dtype = ConvertCommand.ParseDType(o);
        long shard = ConvertCommand.ParseSize(o.Get("--max-shard-size"));
        ConvertCommand.PrepareTarget(from, to);
        TorchRuntime.Initialize(o.GetInt("--threads", 1));
        using var model = HfModelFolder.LoadModel(from);
        bool unroll = o.Has("--unroll");
        ConvertCommand.WriteFolder(to, from, dir =>
        {
            if (unroll) HfModelFolder.WriteUnrolled(dir, model, dtype, shard);
            else HfModelFolder.Write(dir, model, dtype, shard);
        });
        var files = Directory.GetFiles(to, "*.safetensors").Select(Path.GetFileName).Order().ToList();
        stdout.WriteLine($"{from} → {to}: {HfModelFolder.TorchDTypeName(dtype)}, {string.Join(", ", files)}" +
                         (unroll ? $", unrolled to {model.Layout.UnrolledDepth} Llama layers" : model.Config.MoR is null ? "" : " (with the \"mor\" block)"));
        return CommandLine.ExitOk;
    }
}
