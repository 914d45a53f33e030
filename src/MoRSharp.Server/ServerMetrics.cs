using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using MoRSharp.Inference;

namespace MoRSharp.Server;

/// <summary>
/// The server's HTTP counters, and the Prometheus text exposition (format 0.0.4) of them together with the generation
/// service's <see cref="GenerationMetrics"/>: tokens generated, tokens/s, queue depth, active sequences, tokens per exit
/// depth (recursions run), requests.
/// </summary>
public sealed class ServerMetrics
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private readonly ConcurrentDictionary<(string endpoint, int code), long> requests = new();
    private long inFlight;

    /// <summary>Counts a finished request; status 499 = the client went away before the answer was complete.</summary>
    public void Record(string endpoint, int status) => requests.AddOrUpdate((endpoint, status), 1, (_, n) => n + 1);

    public IDisposable Track()
    {
        Interlocked.Increment(ref inFlight);
        return new Decrement(this);
    }

    private sealed class Decrement(ServerMetrics m) : IDisposable
    {
        private int done;
        public void Dispose() { if (Interlocked.Exchange(ref done, 1) == 0) Interlocked.Decrement(ref m.inFlight); }
    }

    public string Render(GenerationMetrics g, string modelId)
    {
        var sb = new StringBuilder();
        string model = $"model=\"{Escape(modelId)}\"";
        Metric(sb, "mor_tokens_generated_total", "counter", "Tokens generated.", [(model, g.TokensGenerated)]);
        Metric(sb, "mor_prompt_tokens_total", "counter", "Prompt tokens prefilled.", [(model, g.PromptTokens)]);
        Metric(sb, "mor_tokens_per_second", "gauge", "Generation throughput reported by the generation service.", [(model, g.TokensPerSecond)]);
        Metric(sb, "mor_queue_depth", "gauge", "Requests waiting for a generation slot.", [(model, g.QueueDepth)]);
        Metric(sb, "mor_active_sequences", "gauge", "Sequences being generated.", [(model, g.Active)]);
        Metric(sb, "mor_tokens_by_exit_depth_total", "counter", "Generated tokens by the number of recursions that predicted them.",
            g.TokensPerExitDepth.Select((n, d) => ($"{model},depth=\"{d}\"", (double)n)).ToArray());
        Metric(sb, "mor_generations_completed_total", "counter", "Generations that ended (finished, stopped or cancelled).", [(model, g.RequestsCompleted)]);
        Metric(sb, "mor_http_requests_total", "counter", "HTTP requests by endpoint and status code (499: client closed the connection).",
            requests.OrderBy(kv => kv.Key.endpoint, StringComparer.Ordinal).ThenBy(kv => kv.Key.code)
                .Select(kv => ($"endpoint=\"{Escape(kv.Key.endpoint)}\",code=\"{kv.Key.code}\"", (double)kv.Value)).ToArray());
        Metric(sb, "mor_http_requests_in_flight", "gauge", "HTTP requests being served.", [("", Interlocked.Read(ref inFlight))]);
        return sb.ToString();
    }

    private static void Metric(StringBuilder sb, string name, string type, string help, (string labels, double value)[] samples)
    {
        sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        sb.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
        foreach (var (labels, value) in samples)
        {
            sb.Append(name);
            if (labels.Length > 0) sb.Append('{').Append(labels).Append('}');
            sb.Append(' ').Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        }
    }

    private static string Escape(string s) => s.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");
}
