// llama.cpp (LLamaSharp 0.30.0's CPU build) and MoRSharp's batching engine decoding the same vanilla model, alternating
// within one run, so the machine's drift (30–40% within an hour here) cancels out of the ratio.
//   dotnet run -c Release --project bench/MoRSharp.LlamaCpp -- [--shape micro|small|medium] [--parallel 1,4,16] [--tokens 128] [--prompt 512] [--rounds 3] [--threads 2]
// Like llama-bench's tg test and batched-bench's S_TG: P sequences decode `tokens` tokens each in lock step from a one-token
// prompt; llama.cpp is fed random ids (no sampling, as in llama-bench), MoRSharp samples greedily through its engine.
// Like llama-bench's pp test: one `prompt`-token prompt of random ids, tokens/s = prompt / time to its last logits
// (MoRSharp: time to the first new token through the engine, as `mor bench generate --prompt` measures it).
// llama.cpp runs in a child process (this program with --llama-worker) that waits on its stdin while MoRSharp runs: in an
// earlier one-process version of this program, llama.cpp's single stream (micro) ran at 150 tokens/s, against 171–188 in a
// scratch program that ran llama.cpp alone right after.
using System.Diagnostics;
using System.Globalization;
using LLama;
using LLama.Common;
using LLama.Native;
using MoRSharp.Cli.Commands;
using MoRSharp.Data;
using MoRSharp.Inference;
using MoRSharp.LlamaCpp;
using MoRSharp.Model;
using MoRSharp.Native;
using MoRSharp.Reporting;
using static TorchSharp.torch;

string shape = "micro", parallelList = "1,4,16", gguf = "";
int tokens = 128, promptLength = 512, rounds = 3, threads = 2;
bool worker = false;
int[] parallel;
try
{
    for (int i = 0; i < args.Length; i++)
    {
        string Next() => i + 1 < args.Length ? args[++i] : throw new FormatException($"{args[i]}: needs a value");
        int NextInt() { string name = args[i], v = Next(); return int.TryParse(v, CultureInfo.InvariantCulture, out int n) ? n : throw new FormatException($"{name}: expected an integer, got '{v}'"); }
        switch (args[i])
        {
            case "--shape": shape = Next(); break;
            case "--parallel": parallelList = Next(); break;
            case "--tokens": tokens = NextInt(); break;
            case "--prompt": promptLength = NextInt(); break;
            case "--rounds": rounds = NextInt(); break;
            case "--threads": threads = NextInt(); break;
            case "--llama-worker": worker = true; gguf = Next(); break;
            default: throw new FormatException($"unknown option '{args[i]}'");
        }
    }
    if (shape is not ("micro" or "small" or "medium")) throw new FormatException($"--shape: expected micro, small or medium, got '{shape}'");
    parallel = parallelList.Split(',').Select(s => int.TryParse(s, CultureInfo.InvariantCulture, out int n) && n >= 1 ? n
        : throw new FormatException($"--parallel: expected a comma-separated list of positive integers, got '{parallelList}'")).ToArray();
    if (tokens < 2 || rounds < 1 || threads < 1 || promptLength is < 0 or > 4096)
        throw new FormatException("--tokens ≥ 2, --rounds ≥ 1, --threads ≥ 1, --prompt 0–4096");
}
catch (FormatException e)
{
    Console.Error.WriteLine($"{e.Message}\nusage: MoRSharp.LlamaCpp [--shape micro|small|medium] [--parallel 1,4,16] [--tokens N] [--prompt N (0 = none)] [--rounds R] [--threads N]");
    return 2;
}
int context = Math.Max(tokens, promptLength) + 8;
var config = BenchGenerateCommand.Shape(shape, null, context);
var prompt = Enumerable.Range(0, 8).Select(k => 1 + k * 5003 % (config.VocabSize - 1)).ToArray();   // for the same-model check
if (worker) return LlamaWorker.Run(gguf, config.VocabSize, context, parallel.Max(), tokens, threads, prompt);

TorchRuntime.Initialize(threads);
using var model = new MoRForCausalLM(config, seed: 1);
model.eval();
gguf = Path.Combine(Path.GetTempPath(), $"morsharp-{shape}-{Environment.ProcessId}.gguf");
GgufWriter.Write(gguf, model, Path.Combine(SharedDataPath.Locate(), "tokenizers", "gpt2"));
Process? child = null;
try
{
    child = Process.Start(new ProcessStartInfo("dotnet")
    {
        ArgumentList = { typeof(LlamaWorker).Assembly.Location, "--llama-worker", gguf, "--shape", shape, "--parallel", parallelList,
                         "--tokens", tokens.ToString(CultureInfo.InvariantCulture), "--prompt", promptLength.ToString(CultureInfo.InvariantCulture),
                         "--threads", threads.ToString(CultureInfo.InvariantCulture) },
        RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false,
    }) ?? throw new InvalidOperationException("could not start the llama.cpp worker");
    string Ask(string line)
    {
        child.StandardInput.WriteLine(line);
        return child.StandardOutput.ReadLine() ?? throw new InvalidOperationException($"the llama.cpp worker ended (exit {(child.WaitForExit(5000) ? child.ExitCode : -1)})");
    }
    // The worker's first lines: its native library, then the last-position logits of the prompt.
    string library = Ask("library");
    var theirs = Ask("logits").Split(' ').Select(x => float.Parse(x, CultureInfo.InvariantCulture)).ToArray();
    float[] ours;
    using (no_grad())
    using (NewDisposeScope())
        ours = model.Forward(tensor(prompt.Select(x => (long)x).ToArray()).unsqueeze(0)).Logits[0, -1].data<float>().ToArray();
    double maxDiff = theirs.Zip(ours, (a, b) => Math.Abs(a - b)).Max(), maxAbs = ours.Max(Math.Abs);

    var rng = new Random(1);
    var tokenizer = new BenchGenerateCommand.IdsOnlyTokenizer(config.VocabSize);
    var engines = parallel.Distinct().ToDictionary(p => p, p => new BatchingEngine(model, tokenizer, new EngineOptions { MaxBatch = p, MaxQueue = p, ContextLength = context }));
    double EngineRun(int p)
    {
        var options = new GenerationOptions { MaxTokens = tokens, Sampling = SamplingOptions.Greedy, StopTokenIds = [] };
        var clock = Stopwatch.StartNew();
        Task.WhenAll(Enumerable.Range(0, p).Select(_ => engines[p].CompleteAsync([rng.Next(1, config.VocabSize)], options))).GetAwaiter().GetResult();
        return p * tokens / clock.Elapsed.TotalSeconds;
    }
    double LlamaRun(int p) => double.Parse(Ask(p.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);

    // Prompt processing: a new random prompt each time (the engine must not reuse a cached one), one new token.
    using var promptEngine = new BatchingEngine(model, tokenizer, new EngineOptions { MaxBatch = 1, MaxQueue = 1, ContextLength = context });
    double EnginePrompt()
    {
        var ids = Enumerable.Range(0, promptLength).Select(_ => rng.Next(1, config.VocabSize)).ToArray();
        var clock = Stopwatch.StartNew();
        promptEngine.CompleteAsync(ids, new GenerationOptions { MaxTokens = 1, Sampling = SamplingOptions.Greedy, StopTokenIds = [] }).GetAwaiter().GetResult();
        return promptLength / clock.Elapsed.TotalSeconds;
    }
    double LlamaPrompt() => double.Parse(Ask($"pp {promptLength}"), CultureInfo.InvariantCulture);
    // The table's rows: P sequences decoding, then (key 0) the prompt.
    var runs = parallel.Select(p => (key: p, llama: (Func<double>)(() => LlamaRun(p)), ours: (Func<double>)(() => EngineRun(p)))).ToList();
    if (promptLength > 0) runs.Add((0, LlamaPrompt, EnginePrompt));

    // Warm both (first-call costs, the JIT's tiering of the engine's decode path) before anything is timed.
    foreach (var (_, llamaRun, engineRun) in runs) { llamaRun(); var warm = Stopwatch.StartNew(); do engineRun(); while (warm.Elapsed.TotalSeconds < 1.5); }

    var results = runs.ToDictionary(r => r.key, _ => (llama: new List<double>(), ours: new List<double>()));
    using (var bar = new ProgressBar("llama.cpp vs MoRSharp", rounds * runs.Count, Console.Error))
        for (int round = 0, done = 0; round < rounds; round++)
            foreach (var (key, llamaRun, engineRun) in runs)
            {
                // alternate which goes first, so neither always runs right after the other
                if (round % 2 == 0) { results[key].llama.Add(llamaRun()); results[key].ours.Add(engineRun()); }
                else { results[key].ours.Add(engineRun()); results[key].llama.Add(llamaRun()); }
                bar.Report(++done);
            }
    foreach (var e in engines.Values) e.Dispose();

    static double Median(IEnumerable<double> xs) { var a = xs.Order().ToArray(); return a[a.Length / 2]; }
    static string F(double x, string f = "F1") => x.ToString(f, CultureInfo.InvariantCulture);
    var table = new ConsoleTable("test", "llama.cpp tokens/s", "MoRSharp tokens/s", "MoRSharp ÷ llama.cpp", "range");
    foreach (var (key, _, _) in runs)
    {
        var (l, o) = results[key];
        var ratios = l.Zip(o, (a, b) => b / a).Order().ToArray();
        table.AddRow(key == 0 ? $"prompt {promptLength} (pp)" : $"decode, {key} sequence{(key == 1 ? "" : "s")}", F(Median(l)), F(Median(o)),
            F(ratios[ratios.Length / 2], "F2"), $"{F(ratios[0], "F2")}–{F(ratios[^1], "F2")}");
    }
    Console.WriteLine(table.ToText());
    Console.WriteLine($"shape {shape} (d {config.HiddenSize}, {config.NumHiddenLayers} layers, {config.NumAttentionHeads}/{config.NumKeyValueHeads} heads, " +
                      $"FFN {config.IntermediateSize}, vocab {config.VocabSize} tied), random float32 weights, the same in both; {threads} threads each; " +
                      $"{tokens} tokens per sequence from a one-token prompt; medians of {rounds} round{(rounds == 1 ? "" : "s")}, ratio = median of per-round ratios.");
    Console.WriteLine($"llama.cpp: {library} (its default float16 KV cache; MoRSharp's is float32)");
    Console.WriteLine($"same model: last-position logits of an 8-token prompt, max |llama.cpp − MoRSharp| = {maxDiff:G3} (largest |logit| {maxAbs:G3})");
    return 0;
}
finally
{
    if (child is { HasExited: false }) { child.StandardInput.WriteLine("quit"); if (!child.WaitForExit(10000)) child.Kill(); }
    File.Delete(gguf);
}
