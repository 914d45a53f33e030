using System.Diagnostics;
using System.Globalization;
using MoRSharp.Data;
using MoRSharp.Data.Tokenizers;

namespace MoRSharp.Cli.Commands;

/// <summary><c>mor data prepare</c>: tokenizes .txt / .jsonl / .parquet inputs into <c>train.bin</c>, <c>val.bin</c> and <c>meta.json</c>.</summary>
public sealed class DataPrepareCommand : ICommand
{
    public string Name => "data prepare";

    public string Summary => "Tokenize text, JSONL or Parquet files into train/validation token shards (train.bin, val.bin, meta.json).";

    public IReadOnlyList<string> Usage { get; } =
    [
        "mor data prepare --input PATH [--input PATH…] --out DIR [--tokenizer gpt2|bytes|PATH]",
        "                 [--field F] [--column C] [--doc-per-file] [--val-fraction X|--val-docs N] [--seed S] [--skip-bad-lines]",
    ];

    public IReadOnlyList<CliOption> Options { get; } =
    [
        new("--input", "PATH", "a .txt/.jsonl/.parquet file or a folder (searched recursively); repeat for more", Repeatable: true),
        new("--out", "DIR", "output folder for train.bin, val.bin, meta.json and tokenizer/"),
        new("--tokenizer", "NAME|PATH", "gpt2 (default), bytes, a tokenizer.json, or a folder with tokenizer files"),
        new("--field", "F", "JSONL: the string field holding the text (default: text)"),
        new("--column", "C", "Parquet: the column holding the text (default: text)"),
        new("--doc-per-file", null, "text files: one document per file (default: documents are separated by blank lines)"),
        new("--val-fraction", "X", "probability that a document goes to validation, in [0, 1) (default: 0.01)"),
        new("--val-docs", "N", "put exactly N documents (chosen at random) in validation instead of a fraction"),
        new("--seed", "S", "seed of the train/validation split (default: 0)"),
        new("--skip-bad-lines", null, "JSONL: skip and count lines that are not JSON objects with the field, instead of failing"),
    ];

    public int Execute(ParsedOptions o, TextWriter stdout, TextWriter stderr)
    {
        var inputs = o.GetAll("--input");
        if (inputs.Count == 0) throw new UsageException("give at least one --input PATH");
        string outDir = o.Get("--out") ?? throw new UsageException("give --out DIR");
        if (o.Has("--val-fraction") && o.Has("--val-docs")) throw new UsageException("give either --val-fraction or --val-docs, not both");
        double fraction = o.GetDouble("--val-fraction") ?? 0.01;
        if (!(fraction >= 0 && fraction < 1)) throw new UsageException($"--val-fraction must be in [0, 1), got {fraction.ToString(CultureInfo.InvariantCulture)}");
        int? valDocs = o.GetInt("--val-docs", min: 0);
        long seed = 0;
        if (o.Get("--seed") is string s && !long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out seed))
            throw new UsageException($"--seed: expected an integer, got '{s}'");
        string tokenizerName = o.Get("--tokenizer") ?? "gpt2";
        string? field = o.Get("--field");
        string? column = o.Get("--column");
        if (field is { Length: 0 }) throw new UsageException("--field must not be empty");
        if (column is { Length: 0 }) throw new UsageException("--column must not be empty");

        var tokenizer = TokenizerFactory.Load(tokenizerName);
        var options = new DataPrepareOptions
        {
            Inputs = inputs,
            OutputDirectory = outDir,
            Corpus = new CorpusOptions
            {
                JsonlField = field ?? "text",
                ParquetColumn = column ?? "text",
                DocumentPerFile = o.Has("--doc-per-file"),
                SkipBadLines = o.Has("--skip-bad-lines"),
            },
            ValFraction = fraction,
            ValDocs = valDocs,
            Seed = seed,
        };

        bool console = ReferenceEquals(stderr, Console.Error);
        bool tty = console && !Console.IsErrorRedirected;
        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler? onCancel = null;
        if (console)
        {
            onCancel = (_, e) =>
            {
                e.Cancel = true;
                cts.Cancel();
            };
            Console.CancelKeyPress += onCancel;
        }
        var progress = new ProgressPrinter(stderr, tty);
        DataPrepareResult result;
        try
        {
            stderr.WriteLine($"tokenizer {tokenizer.Name} (vocab {tokenizer.VocabSize:N0}, EOS {tokenizer.EosId?.ToString(CultureInfo.InvariantCulture) ?? "none"})");
            result = DataPreparer.Prepare(options, tokenizer, progress, cts.Token);
        }
        catch (OperationCanceledException)
        {
            progress.Finish();
            stderr.WriteLine("error: cancelled; no shards were written");
            return CommandLine.ExitError;
        }
        finally
        {
            progress.Finish();
            if (onCancel is not null) Console.CancelKeyPress -= onCancel;
        }

        WriteSummary(stdout, result);
        foreach (var w in result.Warnings) stderr.WriteLine($"warning: {w}");
        return CommandLine.ExitOk;
    }

    private static void WriteSummary(TextWriter w, DataPrepareResult r)
    {
        long inputBytes = r.Sources.Sum(f => f.Bytes);
        w.WriteLine($"inputs     {r.Sources.Count:N0} file{(r.Sources.Count == 1 ? "" : "s")}, {Mb(inputBytes)}");
        w.WriteLine($"tokenizer  {r.TokenizerName} (vocab {r.VocabSize:N0}, EOS {r.EosId}) → {r.TokenizerDirectory}");
        w.WriteLine($"output     {r.OutputDirectory} ({DataPreparer.TrainFile}, {DataPreparer.ValFile}, {DataPreparer.MetaFile})");
        w.WriteLine();
        var total = new SplitSummary("total", "", r.Train.Documents + r.Val.Documents, r.Train.Tokens + r.Val.Tokens, r.Train.Bytes + r.Val.Bytes);
        var rows = new[] { r.Train, r.Val, total };
        string[] head = ["split", "documents", "tokens", "bytes", "bytes/token"];
        var cells = rows.Select(s => new[]
        {
            s.Name, s.Documents.ToString("N0", CultureInfo.InvariantCulture), s.Tokens.ToString("N0", CultureInfo.InvariantCulture),
            s.Bytes.ToString("N0", CultureInfo.InvariantCulture), s.BytesPerToken.ToString("F2", CultureInfo.InvariantCulture),
        }).ToList();
        var widths = Enumerable.Range(0, head.Length).Select(i => Math.Max(head[i].Length, cells.Max(c => c[i].Length))).ToArray();
        w.WriteLine(string.Join("  ", head.Select((h, i) => i == 0 ? h.PadRight(widths[i]) : h.PadLeft(widths[i]))));
        foreach (var c in cells) w.WriteLine(string.Join("  ", c.Select((x, i) => i == 0 ? x.PadRight(widths[i]) : x.PadLeft(widths[i]))));
        w.WriteLine();
        w.WriteLine($"replaced bytes (invalid UTF-8 → U+FFFD): {r.ReplacedBytes:N0}");
        if (r.SkippedLines > 0) w.WriteLine($"skipped bad lines: {r.SkippedLines:N0}");
        if (r.EmptyDocuments > 0) w.WriteLine($"empty documents skipped: {r.EmptyDocuments:N0}");
        double seconds = Math.Max(r.Elapsed.TotalSeconds, 1e-9);
        w.WriteLine($"time {r.Elapsed.TotalSeconds.ToString("F1", CultureInfo.InvariantCulture)} s ({Mb((long)(inputBytes / seconds))}/s)");
    }

    private static string Mb(long bytes) => bytes >= 1 << 20
        ? (bytes / 1048576.0).ToString("F1", CultureInfo.InvariantCulture) + " MB"
        : (bytes / 1024.0).ToString("F1", CultureInfo.InvariantCulture) + " KB";

    /// <summary>Draws a progress bar on a terminal (redrawn in place, at most 10× a second), or prints a line every 10 s otherwise.
    /// Synchronous (unlike <see cref="Progress{T}"/>), so lines never arrive after the summary.</summary>
    private sealed class ProgressPrinter(TextWriter w, bool tty) : IProgress<DataProgress>
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private long _lastDraw = -1;
        private bool _drawn;
        private string _phase = "";

        public void Report(DataProgress p)
        {
            long now = _clock.ElapsedMilliseconds;
            bool phaseChanged = p.Phase != _phase;
            if (tty)
            {
                if (!phaseChanged && now - _lastDraw < 100 && p.BytesRead < p.TotalBytes) return;
                if (phaseChanged && _drawn) w.WriteLine();
                _phase = p.Phase;
                _lastDraw = now;
                const int width = 30;
                int filled = (int)Math.Round(p.Fraction * width);
                string bar = new string('#', filled) + new string('.', width - filled);
                w.Write($"\r{p.Phase,-10} [{bar}] {p.Fraction * 100,5:F1}%  {Mb(p.BytesRead)} / {Mb(p.TotalBytes)}  {p.Documents:N0} docs  {p.Tokens:N0} tokens   ");
                w.Flush();
                _drawn = true;
            }
            else
            {
                if (!phaseChanged && now - _lastDraw < 10_000) return;
                if (_lastDraw < 0 && phaseChanged) { _phase = p.Phase; _lastDraw = now; return; }   // no line for the very first report
                _phase = p.Phase;
                _lastDraw = now;
                w.WriteLine($"{p.Phase}: {p.Fraction * 100:F1}% ({Mb(p.BytesRead)} of {Mb(p.TotalBytes)}), {p.Documents:N0} documents, {p.Tokens:N0} tokens");
            }
        }

        public void Finish()
        {
            if (tty && _drawn) w.WriteLine();
            _drawn = false;
        }
    }
}
