using System.Diagnostics;
using System.Globalization;
using LLama;
using LLama.Common;
using LLama.Native;

namespace MoRSharp.LlamaCpp;

/// <summary>
/// The llama.cpp side, in a process of its own: loads the GGUF, then answers one line per request on stdin —
/// "library" (the ggml CPU library it loaded), "logits" (the prompt's last-position logits), "P" (decode P sequences of
/// `tokens` tokens each in lock step and print tokens/s), "pp N" (one N-token prompt of random ids, logits for its last
/// token only, as llama-bench's pp test; prints tokens/s), "quit".
/// </summary>
public static class LlamaWorker
{
    public static int Run(string gguf, int vocab, int context, int maxParallel, int tokens, int threads, int[] prompt)
    {
        NativeLogConfig.llama_log_set((level, message) => { if (level == LLamaLogLevel.Error) Console.Error.Write(message); });
        var p = new ModelParams(gguf)
        {
            ContextSize = (uint)(context * maxParallel), BatchSize = (uint)Math.Max(512, context), SeqMax = (uint)maxParallel,
            Threads = threads, BatchThreads = threads, GpuLayerCount = 0,
        };
        using var weights = LLamaWeights.LoadFromFile(p);
        using var llama = weights.CreateContext(p);
        var batch = new LLamaBatch();
        var rng = new Random(1);
        void Decode()
        {
            if (llama.NativeHandle.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama.cpp: decode failed");
        }
        for (string? line; (line = Console.ReadLine()) is not null && line != "quit";)
        {
            switch (line)
            {
                case "library":
                    Console.WriteLine(File.ReadLines("/proc/self/maps").Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[^1])
                        .FirstOrDefault(f => f.EndsWith("libggml-cpu.so", StringComparison.Ordinal)) ?? "?");
                    break;
                case "logits":
                    llama.NativeHandle.MemoryClear();
                    batch.Clear();
                    for (int t = 0; t < prompt.Length; t++) batch.Add((LLamaToken)prompt[t], t, (LLamaSeqId)0, t == prompt.Length - 1);
                    Decode();
                    Console.WriteLine(string.Join(' ', llama.NativeHandle.GetLogitsIth(prompt.Length - 1).ToArray().Select(x => x.ToString("R", CultureInfo.InvariantCulture))));
                    break;
                case var pp when pp.StartsWith("pp ", StringComparison.Ordinal):
                {
                    int length = int.Parse(pp[3..], CultureInfo.InvariantCulture);
                    llama.NativeHandle.MemoryClear();
                    batch.Clear();
                    for (int t = 0; t < length; t++) batch.Add((LLamaToken)rng.Next(1, vocab), t, (LLamaSeqId)0, t == length - 1);
                    var clock = Stopwatch.StartNew();
                    Decode();
                    Console.WriteLine((length / clock.Elapsed.TotalSeconds).ToString("R", CultureInfo.InvariantCulture));
                    break;
                }
                default:
                {
                    int n = int.Parse(line, CultureInfo.InvariantCulture);
                    llama.NativeHandle.MemoryClear();
                    var clock = Stopwatch.StartNew();
                    for (int t = 0; t < tokens; t++)
                    {
                        batch.Clear();
                        for (int s = 0; s < n; s++) batch.Add((LLamaToken)rng.Next(1, vocab), t, (LLamaSeqId)s, true);
                        Decode();
                    }
                    Console.WriteLine((n * tokens / clock.Elapsed.TotalSeconds).ToString("R", CultureInfo.InvariantCulture));
                    break;
                }
            }
        }
        return 0;
    }
}
