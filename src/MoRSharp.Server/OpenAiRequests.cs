using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;

namespace MoRSharp.Server;

/// <summary>A parsed <c>POST /v1/chat/completions</c> body.</summary>
public sealed record ChatCompletionRequest(List<ChatMessage> Messages, ChatOptions Options, bool Stream, bool IncludeUsage);

/// <summary>A parsed <c>POST /v1/completions</c> body: the prompt as text or as token ids.</summary>
public sealed record CompletionRequest(string? PromptText, int[]? PromptIds, ChatOptions Options, bool Stream, bool IncludeUsage, bool Echo);

/// <summary>
/// Reads OpenAI request bodies into typed requests. Every bad value is an <see cref="ApiException"/> (400) naming the field
/// as OpenAI does (<c>temperature</c>, <c>messages[1].content</c>). Fields the server cannot honour (n &gt; 1, logprobs,
/// tools, penalties, JSON response formats) are refused rather than silently ignored; unknown fields are ignored, since
/// clients send vendor extensions. Extensions accepted here: <c>top_k</c> and <c>repetition_penalty</c>.
/// </summary>
public sealed class OpenAiRequests(string modelId, int maxTokensLimit)
{
    public const int MaxStopSequences = 4;

    public ChatCompletionRequest ParseChat(JsonObject body)
    {
        var messages = new List<ChatMessage>();
        if (body["messages"] is not JsonArray array) throw Missing(body, "messages", "an array of messages");
        if (array.Count == 0) throw ApiException.Invalid("messages", "must contain at least one message");
        for (int i = 0; i < array.Count; i++)
        {
            string path = $"messages[{i}]";
            if (array[i] is not JsonObject m) throw ApiException.Invalid(path, "expected an object with role and content");
            string role = Str(m, "role", path + ".role") ?? throw ApiException.Invalid(path + ".role", "is required");
            role = role switch
            {
                "system" or "user" or "assistant" or "tool" => role,
                "developer" => "system",
                _ => throw ApiException.Invalid(path + ".role", $"must be system, developer, user, assistant or tool, got '{role}'"),
            };
            if (m["tool_calls"] is JsonArray { Count: > 0 }) throw ApiException.Invalid(path + ".tool_calls", "tool calls are not supported");
            messages.Add(new ChatMessage(new ChatRole(role), Content(m["content"], path + ".content")));
        }
        var options = Sampling(body, allowCompletionTokens: true);
        if (body["tools"] is JsonArray { Count: > 0 }) throw ApiException.Invalid("tools", "function calling is not supported");
        if (body["response_format"] is JsonObject rf && Str(rf, "type", "response_format.type") is { } type && type != "text")
            throw ApiException.Invalid("response_format", $"only type 'text' is supported, got '{type}'");
        if (Bool(body, "logprobs") == true) throw ApiException.Invalid("logprobs", "log probabilities are not supported");
        var (stream, usage) = Streaming(body);
        return new ChatCompletionRequest(messages, options, stream, usage);
    }

    public CompletionRequest ParseCompletion(JsonObject body)
    {
        string? text = null;
        int[]? ids = null;
        switch (body["prompt"])
        {
            case null: throw Missing(body, "prompt", "a string, an array of token ids, or an array holding one of them");
            case JsonValue v when v.GetValueKind() == JsonValueKind.String: text = v.GetValue<string>(); break;
            case JsonArray a when a.Count == 0: throw ApiException.Invalid("prompt", "must not be empty");
            case JsonArray a when a.Count == 1 && a[0] is JsonValue v1 && v1.GetValueKind() == JsonValueKind.String: text = v1.GetValue<string>(); break;
            case JsonArray a when a.Count == 1 && a[0] is JsonArray inner: ids = TokenIds(inner, "prompt[0]"); break;
            case JsonArray a when a.All(x => x is JsonValue xv && xv.GetValueKind() == JsonValueKind.Number): ids = TokenIds(a, "prompt"); break;
            case JsonArray: throw ApiException.Invalid("prompt", "several prompts in one request are not supported; send one string or one array of token ids");
            default: throw ApiException.Invalid("prompt", "expected a string or an array of token ids");
        }
        var options = Sampling(body, allowCompletionTokens: false);
        if (body["logprobs"] is JsonValue lp && lp.GetValueKind() != JsonValueKind.Null && lp.GetValueKind() != JsonValueKind.False)
            throw ApiException.Invalid("logprobs", "log probabilities are not supported");
        if (Str(body, "suffix", "suffix") is { Length: > 0 }) throw ApiException.Invalid("suffix", "insertion (suffix) is not supported");
        if (Int(body, "best_of", 1, int.MaxValue) is > 1) throw ApiException.Invalid("best_of", "must be 1 (one completion per request)");
        bool echo = Bool(body, "echo") ?? false;
        var (stream, usage) = Streaming(body);
        return new CompletionRequest(text, ids, options, stream, usage, echo);
    }

    /// <summary>The fields chat and completions share: model, limits, sampling, stop.</summary>
    private ChatOptions Sampling(JsonObject body, bool allowCompletionTokens)
    {
        string model = Str(body, "model", "model") ?? throw Missing(body, "model", "a model id (GET /v1/models lists them)");
        if (model != modelId) throw new ApiException(404, $"model: '{model}' is not served here; this server serves '{modelId}'", param: "model", code: "model_not_found");
        int? max = Int(body, "max_tokens", 1, int.MaxValue);
        if (allowCompletionTokens) max = Int(body, "max_completion_tokens", 1, int.MaxValue) ?? max;
        if (max > maxTokensLimit)
            throw ApiException.Invalid(body.ContainsKey("max_completion_tokens") ? "max_completion_tokens" : "max_tokens", $"must be ≤ {maxTokensLimit} (the server's limit), got {max}");
        if (Int(body, "n", 1, int.MaxValue) is > 1) throw ApiException.Invalid("n", "must be 1 (one choice per request)");
        if (Number(body, "frequency_penalty", -2, 2) is { } fp && fp != 0) throw ApiException.Invalid("frequency_penalty", "not supported (use repetition_penalty)");
        if (Number(body, "presence_penalty", -2, 2) is { } pp && pp != 0) throw ApiException.Invalid("presence_penalty", "not supported (use repetition_penalty)");
        if (body["logit_bias"] is JsonObject { Count: > 0 }) throw ApiException.Invalid("logit_bias", "not supported");
        var options = new ChatOptions
        {
            ModelId = model,
            MaxOutputTokens = max,
            Temperature = (float?)Number(body, "temperature", 0, 2),
            TopP = (float?)Number(body, "top_p", 0, 1, exclusiveMin: true),
            TopK = Int(body, "top_k", 0, int.MaxValue),
            Seed = Long(body, "seed"),
            StopSequences = Stop(body),
        };
        if (Number(body, "repetition_penalty", 0, 100, exclusiveMin: true) is { } rp)
            options.AdditionalProperties = new() { ["repetition_penalty"] = rp };
        return options;
    }

    private static (bool stream, bool includeUsage) Streaming(JsonObject body)
    {
        bool stream = Bool(body, "stream") ?? false;
        bool usage = false;
        switch (body["stream_options"])
        {
            case null: break;
            case JsonObject so: usage = Bool(so, "include_usage", "stream_options.include_usage") ?? false; break;
            case JsonValue v when v.GetValueKind() == JsonValueKind.Null: break;
            default: throw ApiException.Invalid("stream_options", "expected an object");
        }
        if (usage && !stream) throw ApiException.Invalid("stream_options", "only allowed when stream is true");
        return (stream, usage);
    }

    private static List<string>? Stop(JsonObject body)
    {
        var stops = body["stop"] switch
        {
            null => null,
            JsonValue v when v.GetValueKind() == JsonValueKind.Null => null,
            JsonValue v when v.GetValueKind() == JsonValueKind.String => [v.GetValue<string>()],
            JsonArray a => a.Select((x, i) => x is JsonValue xv && xv.GetValueKind() == JsonValueKind.String ? xv.GetValue<string>()
                : throw ApiException.Invalid($"stop[{i}]", "expected a string")).ToList(),
            _ => throw ApiException.Invalid("stop", "expected a string or an array of strings"),
        };
        if (stops is null) return null;
        if (stops.Count > MaxStopSequences) throw ApiException.Invalid("stop", $"at most {MaxStopSequences} stop sequences, got {stops.Count}");
        if (stops.Any(s => s.Length == 0)) throw ApiException.Invalid("stop", "stop sequences must not be empty");
        return stops;
    }

    /// <summary>Message content: a string, null, or an array of <c>{"type": "text", "text": …}</c> parts.</summary>
    private static string Content(JsonNode? node, string path)
    {
        switch (node)
        {
            case null: return "";
            case JsonValue v when v.GetValueKind() == JsonValueKind.String: return v.GetValue<string>();
            case JsonValue v when v.GetValueKind() == JsonValueKind.Null: return "";
            case JsonArray parts:
                var sb = new System.Text.StringBuilder();
                for (int i = 0; i < parts.Count; i++)
                {
                    string p = $"{path}[{i}]";
                    if (parts[i] is not JsonObject part) throw ApiException.Invalid(p, "expected a content part object");
                    string type = Str(part, "type", p + ".type") ?? throw ApiException.Invalid(p + ".type", "is required");
                    if (type != "text") throw ApiException.Invalid(p + ".type", $"only 'text' parts are supported, got '{type}'");
                    sb.Append(Str(part, "text", p + ".text") ?? throw ApiException.Invalid(p + ".text", "is required"));
                }
                return sb.ToString();
            default: throw ApiException.Invalid(path, "expected a string or an array of content parts");
        }
    }

    private static int[] TokenIds(JsonArray a, string path)
    {
        if (a.Count == 0) throw ApiException.Invalid(path, "must not be empty");
        var ids = new int[a.Count];
        for (int i = 0; i < a.Count; i++)
            ids[i] = a[i] is JsonValue v && v.TryGetValue(out int id) ? id : throw ApiException.Invalid($"{path}[{i}]", "expected an integer token id");
        return ids;
    }

    private static ApiException Missing(JsonObject body, string name, string what) =>
        ApiException.Invalid(name, body.ContainsKey(name) ? $"expected {what}" : $"is required ({what})");

    private static string? Str(JsonObject o, string name, string path)
    {
        var n = o[name];
        if (n is null || n.GetValueKind() == JsonValueKind.Null) return null;
        return n is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : throw ApiException.Invalid(path, $"expected a string, got {Kind(n)}");
    }

    private static bool? Bool(JsonObject o, string name, string? path = null)
    {
        var n = o[name];
        if (n is null) return null;
        return n.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            JsonValueKind.Null => null,
            _ => throw ApiException.Invalid(path ?? name, $"expected true or false, got {Kind(n)}"),
        };
    }

    private static double? Number(JsonObject o, string name, double min, double max, bool exclusiveMin = false)
    {
        var n = o[name];
        if (n is null || n.GetValueKind() == JsonValueKind.Null) return null;
        if (n is not JsonValue v || v.GetValueKind() != JsonValueKind.Number) throw ApiException.Invalid(name, $"expected a number, got {Kind(n)}");
        double d = v.GetValue<double>();
        if (d < min || d > max || (exclusiveMin && d == min))
            throw ApiException.Invalid(name, $"must be in {(exclusiveMin ? "(" : "[")}{min}, {max}], got {d}");
        return d;
    }

    private static int? Int(JsonObject o, string name, int min, int max)
    {
        var l = Long(o, name);
        if (l is null) return null;
        if (l < min || l > max) throw ApiException.Invalid(name, $"must be ≥ {min}{(max == int.MaxValue ? "" : $" and ≤ {max}")}, got {l}");
        return (int)l;
    }

    private static long? Long(JsonObject o, string name)
    {
        var n = o[name];
        if (n is null || n.GetValueKind() == JsonValueKind.Null) return null;
        if (n is JsonValue v && v.GetValueKind() == JsonValueKind.Number)
        {
            if (v.TryGetValue(out long l)) return l;
            if (v.TryGetValue(out double d) && d == Math.Floor(d) && Math.Abs(d) < 9e18) return (long)d;
        }
        throw ApiException.Invalid(name, $"expected an integer, got {Kind(n)} {n.ToJsonString()}");
    }

    private static string Kind(JsonNode n) => n.GetValueKind() switch
    {
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        _ => "null",
    };
}
