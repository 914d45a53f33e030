using System.Net;

namespace MoRSharp.Server;

/// <summary>Where the server listens and the limits it enforces.</summary>
public sealed record ServerOptions
{
    /// <summary>An IP address or <c>localhost</c>. Loopback by default: exposing the server is an explicit choice.</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0 picks a free port (see <see cref="MoRServer.Address"/>).</summary>
    public int Port { get; init; } = 8000;
    /// <summary>When set, every <c>/v1</c> request needs <c>Authorization: Bearer KEY</c>.</summary>
    public string? ApiKey { get; init; }
    /// <summary>The model id of <c>/v1/models</c>; requests naming another model get 404.</summary>
    public string ModelId { get; init; } = "mor";
    /// <summary>Largest request body; larger ones get 413.</summary>
    public long MaxBodyBytes { get; init; } = 1 << 20;
    /// <summary>Longest prompt in tokens (null: the context length − 1).</summary>
    public int? MaxPromptTokens { get; init; }
    /// <summary>Largest <c>max_tokens</c> a request may ask for (null: the context length).</summary>
    public int? MaxTokensLimit { get; init; }
    /// <summary>How long a stopping server waits for open connections (generations are cancelled at once).</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>Where internal errors (HTTP 500) are written with their stack trace; null: nowhere.</summary>
    public TextWriter? Log { get; init; }

    /// <summary>The address to bind: an IP literal, or <c>localhost</c> (IPv4 loopback).</summary>
    public IPAddress BindAddress()
    {
        if (Host == "localhost") return IPAddress.Loopback;
        if (IPAddress.TryParse(Host.Trim('[', ']'), out var ip)) return ip;
        throw new ArgumentException($"host: expected an IP address (127.0.0.1, 0.0.0.0, ::1, ::) or localhost, got '{Host}'");
    }

    public void Validate()
    {
        BindAddress();
        if (Port is < 0 or > 65535) throw new ArgumentException($"port: must be in 0..65535, got {Port}");
        if (ApiKey is { Length: 0 }) throw new ArgumentException("api-key: must not be empty");
        if (string.IsNullOrWhiteSpace(ModelId)) throw new ArgumentException("model-id: must not be empty");
        if (MaxBodyBytes < 1024) throw new ArgumentException($"max-body-bytes: must be ≥ 1024, got {MaxBodyBytes}");
        if (MaxPromptTokens is < 1) throw new ArgumentException($"max-prompt-tokens: must be ≥ 1, got {MaxPromptTokens}");
        if (MaxTokensLimit is < 1) throw new ArgumentException($"max-tokens: must be ≥ 1, got {MaxTokensLimit}");
    }
}
