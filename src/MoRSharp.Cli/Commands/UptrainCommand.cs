namespace MoRSharp.Cli.Commands;

/// <summary>
/// <c>mor uptrain --from DIR --data PATH --out DIR …</c>: continue training a converted (or any) model folder — a thin front
/// for <c>mor train --init-from DIR</c>, with the same budget and optimizer options. The optimizer and LR schedule start fresh.
/// </summary>
public sealed class UptrainCommand : ICommand
{
    private static readonly TrainCommand Train = new();
    private static readonly HashSet<string> NotForwarded = ["--config", "--preset", "--init-from", "--resume", "--no-baseline"];

    public string Name => "uptrain";
    public string Summary => "Continue training from a model folder (e.g. the output of mor convert): mor train --init-from.";
    public IReadOnlyList<string> Usage { get; } =
        ["mor uptrain --from DIR --data PATH --out DIR [--steps N|--tokens N|--flops F] [--batch B] [--seq T] [--lr X] [--seed S] …"];

    public IReadOnlyList<CliOption> Options { get; } =
        [new("--from", "DIR", "the model folder to start from (config, weights and tokenizer are taken from it)"),
         .. Train.Options.Where(x => !NotForwarded.Contains(x.Name))];

    public int Execute(ParsedOptions o, TextWriter stdout, TextWriter stderr)
    {
        string from = o.Get("--from") ?? throw new UsageException("--from DIR is required");
        if (!o.Has("--data")) throw new UsageException("--data PATH is required");
        var args = new List<string> { "--init-from", from };
        foreach (var opt in Options.Where(x => x.Name != "--from" && o.Has(x.Name)))
        {
            if (opt.IsFlag) args.Add(opt.Name);
            else foreach (var v in o.GetAll(opt.Name)) { args.Add(opt.Name); args.Add(v); }
        }
        return Train.Execute(CommandLine.Parse(Train, args), stdout, stderr);
    }
}
