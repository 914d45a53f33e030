using System.Text.Json.Nodes;

namespace MoRSharp.Server;

/// <summary>
/// A request the server refuses, answered with an OpenAI-style error object
/// <c>{"error": {"message", "type", "param", "code"}}</c> and <see cref="Status"/>.
/// </summary>
public sealed class ApiException(int status, string message, string type = "invalid_request_error", string? param = null, string? code = null)
    : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    public JsonObject ToJson() => new()
    {
        ["error"] = new JsonObject { ["message"] = Message, ["type"] = Type, ["param"] = Param, ["code"] = Code },
    };

    /// <summary>400 naming the field.</summary>
    public static ApiException Invalid(string param, string message, string? code = null) =>
        new(400, $"{param}: {message}", param: param, code: code);

    /// <summary>Maps an exception from the generation service or the chat client to the HTTP error it means.
    /// Messages that start with a field name (<c>temperature: …</c>) give <c>param</c>; <paramref name="promptField"/> renames
    /// the service's <c>prompt</c> (the chat endpoint's prompt is its <c>messages</c>).</summary>
    public static ApiException From(Exception e, string promptField) => e switch
    {
        ApiException api => api,
        Inference.QueueFullException => new ApiException(429, e.Message, "rate_limit_exceeded", code: "rate_limit_exceeded"),
        ArgumentException or NotSupportedException => FromFieldMessage(e.Message, promptField),
        _ => new ApiException(500, $"internal error: {e.GetType().Name}: {e.Message}", "server_error"),
    };

    private static ApiException FromFieldMessage(string message, string promptField)
    {
        int colon = message.IndexOf(": ", StringComparison.Ordinal);
        string? param = colon > 0 && message[..colon].All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or '[' or ']') ? message[..colon] : null;
        if (param is "prompt" or "messages")
        {
            string text = promptField + message[colon..];
            return new ApiException(400, text, param: promptField, code: message.Contains("context", StringComparison.Ordinal) ? "context_length_exceeded" : null);
        }
        return new ApiException(400, message, param: param);
    }
}
