using MoRSharp.Config;

namespace MoRSharp.Evaluation.Tasks;

/// <summary>Where a task's few-shot examples come from.</summary>
public enum ShotSource
{
    /// <summary>The data has no split to draw examples from: <c>--shots</c> &gt; 0 is refused.</summary>
    None,
    /// <summary>A separate training split.</summary>
    TrainSplit,
    /// <summary>The evaluated file is itself a training split and the only one: examples come from it, never the item itself
    /// (what lm-evaluation-harness does when the few-shot and evaluation documents coincide).</summary>
    SameSplit,
}

/// <summary>How a task is scored.</summary>
public enum TaskKind
{
    /// <summary><c>acc</c> (argmax of Σ log p) and, where the harness reports it, <c>acc_norm</c> (argmax of Σ log p / UTF-8 bytes of the choice).</summary>
    MultipleChoice,
    /// <summary>LAMBADA: <c>acc</c> = the last word is the greedy continuation; perplexity = exp(−mean Σ log p(last word)).</summary>
    LastWord,
}

/// <summary>One evaluation task over the files of the shared eval folder (paths relative to it).</summary>
public sealed class EvalTask
{
    public required string Name { get; init; }
    public required TaskKind Kind { get; init; }
    /// <summary>The evaluated file and what split it is.</summary>
    public required string EvalFile { get; init; }
    public required string EvalSplit { get; init; }
    public required ShotSource Shots { get; init; }
    /// <summary>The few-shot pool's file (for <see cref="ShotSource.SameSplit"/> the evaluated file) and split; null when there is none.</summary>
    public string? ShotFile { get; init; }
    public string? ShotSplit { get; init; }
    /// <summary>Joins context and continuation (and a few-shot example's two halves).</summary>
    public string TargetDelimiter { get; init; } = " ";
    /// <summary>Whether lm-evaluation-harness reports <c>acc_norm</c> for the task.</summary>
    public bool ReportsAccNorm { get; init; } = true;
    /// <summary>Reads a file of this task's format.</summary>
    public required Func<string, IReadOnlyList<EvalItem>> Reader { get; init; }

    public IReadOnlyList<EvalItem> LoadEval(string dataDir) => Reader(Path.Combine(dataDir, EvalFile));

    public IReadOnlyList<EvalItem>? LoadShotPool(string dataDir) => ShotFile is null ? null : Reader(Path.Combine(dataDir, ShotFile));
}

/// <summary>
/// The tasks of <c>mor eval --tasks</c>, over the files in <c>shared/data/eval</c> (see its SOURCES.md). Splits differ from the
/// harness where the data does: HellaSwag and PIQA are the first 2,000 / 900 validation items, ARC is evaluated on Dev (the
/// harness uses Test), WinoGrande on train_xs (the harness: validation) and OpenBookQA on its train file (the harness: test),
/// because those are the only files there.
/// </summary>
public static class TaskRegistry
{
    public static IReadOnlyList<EvalTask> All { get; } =
    [
        new()
        {
            Name = "hellaswag", Kind = TaskKind.MultipleChoice, Reader = HellaSwagReader.Read,
            EvalFile = "hellaswag/hellaswag_val_2000.txt", EvalSplit = "validation, first 2,000 items", Shots = ShotSource.None,
        },
        new()
        {
            Name = "piqa", Kind = TaskKind.MultipleChoice, Reader = p => PiqaReader.Read(p),
            EvalFile = "piqa/valid_900.jsonl", EvalSplit = "validation, first 900 items", Shots = ShotSource.None,
        },
        new()
        {
            Name = "arc_easy", Kind = TaskKind.MultipleChoice, Reader = p => Ai2QuestionReader.Read(p, Ai2QuestionReader.ArcPrompt),
            EvalFile = "arc/ARC-Easy-Dev.jsonl", EvalSplit = "dev (570)",
            Shots = ShotSource.TrainSplit, ShotFile = "arc/ARC-Easy-Train.jsonl", ShotSplit = "train (2,251)",
        },
        new()
        {
            Name = "arc_challenge", Kind = TaskKind.MultipleChoice, Reader = p => Ai2QuestionReader.Read(p, Ai2QuestionReader.ArcPrompt),
            EvalFile = "arc/ARC-Challenge-Dev.jsonl", EvalSplit = "dev (299)",
            Shots = ShotSource.TrainSplit, ShotFile = "arc/ARC-Challenge-Train.jsonl", ShotSplit = "train (1,119)",
        },
        new()
        {
            Name = "winogrande", Kind = TaskKind.MultipleChoice, Reader = p => WinoGrandeReader.Read(p), ReportsAccNorm = false,
            EvalFile = "winogrande/train_xs.jsonl", EvalSplit = "train_xs (160)",
            Shots = ShotSource.SameSplit, ShotFile = "winogrande/train_xs.jsonl", ShotSplit = "train_xs, the item itself excluded",
        },
        new()
        {
            Name = "lambada", Kind = TaskKind.LastWord, Reader = LambadaReader.Read, TargetDelimiter = "", ReportsAccNorm = false,
            EvalFile = "lambada/lambada_test_2000.jsonl", EvalSplit = "test, first 2,000 items", Shots = ShotSource.None,
        },
        new()
        {
            Name = "openbookqa", Kind = TaskKind.MultipleChoice, Reader = p => Ai2QuestionReader.Read(p, Ai2QuestionReader.BarePrompt),
            EvalFile = "openbookqa/train.jsonl", EvalSplit = "train (4,957)",
            Shots = ShotSource.SameSplit, ShotFile = "openbookqa/train.jsonl", ShotSplit = "train, the item itself excluded",
        },
    ];

    /// <summary>Other names accepted for a task.</summary>
    private static readonly Dictionary<string, string> Aliases = new(StringComparer.Ordinal) { ["lambada_openai"] = "lambada" };

    public static IReadOnlyList<string> Names { get; } = All.Select(t => t.Name).ToList();

    /// <summary>The task named <paramref name="name"/>; an <see cref="ArgumentException"/> listing the names otherwise.</summary>
    public static EvalTask Get(string name)
    {
        string key = Aliases.TryGetValue(name, out var a) ? a : name;
        var task = All.FirstOrDefault(t => t.Name == key);
        if (task is not null) return task;
        string? guess = ConfigJson.Suggest(name, Names.Concat(Aliases.Keys));
        throw new ArgumentException($"unknown task '{name}'" + (guess is null ? "" : $" (did you mean '{guess}'?)") + $"; tasks: {string.Join(", ", Names)}");
    }
}
