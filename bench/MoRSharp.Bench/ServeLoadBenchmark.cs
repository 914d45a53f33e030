using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using MoRSharp.Config;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Model;
using MoRSharp.Native;
using MoRSharp.Training;

namespace MoRSharp.Bench;

/// <summary>
/// Load on <c>mor serve</c>: N concurrent clients streaming chat completions for a fixed time against a server running in
/// its own process (started here from mor.dll beside the benchmark, on a free loopback port). Each client sends its next
/// request as soon as the previous one ends; requests still running at the deadline finish. Reports failed requests,
/// tokens/s over the whole run, time to first token and the time between content chunks (≈ one token each), and the
/// server's resident memory (VmRSS) before and after the load, and its peak (VmHWM).
/// </summary>
public static class ServeLoadBenchmark
{
    public static int Run(string[] args)
    {
        var opt = Options.Parse(args);
        int clients = opt.Int("clients", 32), seconds = opt.Int("seconds", 60), maxTokens = opt.Int("max-tokens", 32);
        int threads = opt.Int("threads", Environment.ProcessorCount);
        string preset = opt.Str("preset", "micro-mor-expert"), model = opt.Str("model", "");
        string tmp = Directory.CreateTempSubdirectory("mor-serve-bench-").FullName;
        Process? server = null;
        try
        {
            if (model.Length == 0)
            {
                // A micro model with random weights (seed 0): serving cost does not depend on what the weights learned.
                TorchRuntime.Initialize(1);
                model = Path.Combine(tmp, preset);
                using var m = new MoRForCausalLM(Presets.Get(preset), seed: 0);
                Checkpoint.WriteModelFolder(model, m, TokenizerFactory.Gpt2().SaveTo);
            }
            string mor = Path.Combine(AppContext.BaseDirectory, "mor.dll");
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { mor, "serve", "--model", model, "--port", "0", "--threads", threads.ToString(CultureInfo.InvariantCulture),
                         "--max-queue", Math.Max(64, clients).ToString(CultureInfo.InvariantCulture), "--model-id", "bench" })
                start.ArgumentList.Add(a);
            server = Process.Start(start)!;
            server.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine("server: " + e.Data); };
            server.BeginErrorReadLine();
            var url = WaitForAddress(server);
            long rssStart = Memory(server.Id, "VmRSS");
            Console.WriteLine($"server pid {server.Id} on {url}; {clients} clients × {seconds} s, max_tokens {maxTokens}, preset {preset}, {threads} torch threads");

            var result = Load(url, clients, TimeSpan.FromSeconds(seconds), maxTokens).GetAwaiter().GetResult();
            long rssEnd = Memory(server.Id, "VmRSS"), rssPeak = Memory(server.Id, "VmHWM");
            string metrics;
            using (var http = new HttpClient()) metrics = http.GetStringAsync(new Uri(url, "metrics")).GetAwaiter().GetResult();

            Console.WriteLine();
            Console.WriteLine("| clients | run (s) | requests ok | failed | tokens | tokens/s | TTFT p50 (ms) | TTFT p99 (ms) | inter-token p50 (ms) | inter-token p99 (ms) | RSS start (MiB) | RSS end (MiB) | RSS peak (MiB) |");
            Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {clients} | {result.Elapsed.TotalSeconds:F1} | {result.Ok} | {result.Failed} | {result.Tokens} | {result.Tokens / result.Elapsed.TotalSeconds:F1} | " +
                $"{Pct(result.Ttft, 50):F0} | {Pct(result.Ttft, 99):F0} | {Pct(result.Itl, 50):F1} | {Pct(result.Itl, 99):F1} | " +
                $"{rssStart / 1024.0:F0} | {rssEnd / 1024.0:F0} | {rssPeak / 1024.0:F0} |"));
            var depths = Regex.Matches(metrics, @"^mor_tokens_by_exit_depth_total\{[^}]*depth=""(\d+)""\} (\S+)$", RegexOptions.Multiline)
                .Select(m => $"depth {m.Groups[1].Value}: {m.Groups[2].Value}");
            Console.WriteLine();
            Console.WriteLine($"server tokens by exit depth: {string.Join(", ", depths)}");
            foreach (var e in result.Errors.GroupBy(e => e)) Console.WriteLine($"failure: {e.Key} × {e.Count()}");
            return result.Failed == 0 ? 0 : 1;
        }
        finally
        {
            if (server is { HasExited: false })
            {
                Process.Start("kill", ["-TERM", server.Id.ToString(CultureInfo.InvariantCulture)])?.WaitForExit();   // graceful: mor serve handles SIGTERM
                if (!server.WaitForExit(15_000)) server.Kill(entireProcessTree: true);
            }
            Directory.Delete(tmp, recursive: true);
        }
    }

    private sealed record LoadResult(TimeSpan Elapsed, int Ok, int Failed, long Tokens, List<double> Ttft, List<double> Itl, List<string> Errors);

    private static async Task<LoadResult> Load(Uri url, int clients, TimeSpan duration, int maxTokens)
    {
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = clients * 2 }) { Timeout = TimeSpan.FromMinutes(30) };
        var clock = Stopwatch.StartNew();
        int ok = 0, failed = 0;
        long tokens = 0;
        var ttft = new List<double>();
        var itl = new List<double>();
        var errors = new List<string>();

        async Task Client(int c)
        {
            for (int n = 0; clock.Elapsed < duration; n++)
            {
                var body = new JsonObject
                {
                    ["model"] = "bench",
                    ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"Client {c}, question {n}: what is a recursion?" }),
                    ["max_tokens"] = maxTokens, ["temperature"] = 0.8, ["seed"] = c * 100_000 + n,
                    ["stream"] = true, ["stream_options"] = new JsonObject { ["include_usage"] = true },
                };
                var chunkTimes = new List<double>();
                double sent = clock.Elapsed.TotalMilliseconds;
                long used = 0;
                bool done = false;
                string? error = null;
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(url, "v1/chat/completions"))
                        { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };
                    using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                    if (!response.IsSuccessStatusCode) error = $"HTTP {(int)response.StatusCode}";
                    else
                    {
                        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
                        while (await reader.ReadLineAsync() is { } line)
                        {
                            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                            string data = line[6..];
                            if (data == "[DONE]") { done = true; break; }
                            var chunk = JsonNode.Parse(data)!;
                            if (chunk["error"] is not null) { error = "error event: " + chunk["error"]!["message"]; break; }
                            if (chunk["usage"] is JsonObject u) used = (long)u["completion_tokens"]!;
                            if (chunk["choices"] is JsonArray { Count: > 0 } ch && (string?)ch[0]!["delta"]?["content"] is { Length: > 0 })
                                chunkTimes.Add(clock.Elapsed.TotalMilliseconds);
                        }
                        if (!done && error is null) error = "stream ended without [DONE]";
                    }
                }
                catch (Exception e) { error = e.GetType().Name + ": " + e.Message; }
                lock (errors)
                {
                    if (error is not null) { failed++; errors.Add(error); continue; }
                    ok++;
                    tokens += used;
                    if (chunkTimes.Count > 0) ttft.Add(chunkTimes[0] - sent);
                    for (int i = 1; i < chunkTimes.Count; i++) itl.Add(chunkTimes[i] - chunkTimes[i - 1]);
                }
            }
        }

        await Task.WhenAll(Enumerable.Range(0, clients).Select(c => Task.Run(() => Client(c))));
        return new LoadResult(clock.Elapsed, ok, failed, tokens, ttft, itl, errors);
    }

    /// <summary>Reads mor serve's stdout until it prints the address it listens on.</summary>
    private static Uri WaitForAddress(Process server)
    {
        var read = Task.Run(() =>
        {
            while (server.StandardOutput.ReadLine() is { } line)
                if (Regex.Match(line, @"^serving .* on (http://\S+)$") is { Success: true } m) return new Uri(m.Groups[1].Value);
            throw new InvalidOperationException($"mor serve exited (code {(server.WaitForExit(5000) ? server.ExitCode : -1)}) before listening");
        });
        if (!read.Wait(TimeSpan.FromMinutes(2))) throw new TimeoutException("mor serve did not start listening within 2 minutes");
        _ = Task.Run(() => { while (server.StandardOutput.ReadLine() is not null) { } });   // keep draining
        return read.Result;
    }

    /// <summary>A memory field of /proc/PID/status in KiB (VmRSS: resident now; VmHWM: resident peak).</summary>
    private static long Memory(int pid, string field)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        throw new InvalidDataException($"/proc/{pid}/status has no {field}");
    }

    /// <summary>Nearest-rank percentile; NaN for no samples.</summary>
    private static double Pct(List<double> values, double p)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToList();
        return sorted[Math.Clamp((int)Math.Ceiling(p / 100 * sorted.Count) - 1, 0, sorted.Count - 1)];
    }
}
