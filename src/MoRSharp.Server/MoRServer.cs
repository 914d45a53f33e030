using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MoRSharp.Chat;
using MoRSharp.Inference;

namespace MoRSharp.Server;

/// <summary>
/// The OpenAI-compatible HTTP server (Kestrel): <c>GET /v1/models</c>, <c>POST /v1/completions</c>,
/// <c>POST /v1/chat/completions</c> (JSON, or server-sent events with <c>stream: true</c>, ending in <c>data: [DONE]</c>),
/// <c>GET /health</c> and <c>GET /metrics</c> (Prometheus). Every request goes to one <see cref="IGenerationService"/>, so
/// concurrent requests share whatever batching it does.
/// </summary>
/// <remarks>
/// Safety: binds <see cref="ServerOptions.Host"/> (loopback by default); with an API key every <c>/v1</c> request needs
/// <c>Authorization: Bearer KEY</c> (401 otherwise; <c>/health</c> and <c>/metrics</c> stay open for probes and scrapers);
/// bodies over <see cref="ServerOptions.MaxBodyBytes"/> get 413; prompts and <c>max_tokens</c> are limited (400 naming the
/// field); a full queue gets 429 with <c>Retry-After</c>; a client that disconnects cancels its generation (the request's
/// abort token flows into <see cref="IGenerationService.GenerateAsync"/>), and stopping the server cancels all of them.
/// Streaming responses start only after the first token, so admission and validation errors are still plain HTTP errors.
/// </remarks>
public sealed class MoRServer : IAsyncDisposable
{
    private readonly WebApplication app;
    private readonly IGenerationService service;
    private readonly ServerOptions options;
    private readonly MoRChatClient chat;
    private readonly OpenAiRequests parser;
    private readonly byte[]? keyHash;
    private readonly long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    /// <summary>Relaxed escaping: API output is JSON, never embedded in HTML, so quotes and non-ASCII text stay readable.</summary>
    private static readonly JsonSerializerOptions Json = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private readonly int maxTokens;   // the largest max_tokens a request may ask for, and the default of chat requests

    public Uri Address { get; private set; } = null!;
    public ServerMetrics Metrics { get; } = new();

    private MoRServer(IGenerationService service, ServerOptions options, IChatFormatter? formatter)
    {
        options.Validate();
        this.service = service;
        this.options = options;
        maxTokens = Math.Min(options.MaxTokensLimit ?? service.ContextLength, service.ContextLength);
        chat = new MoRChatClient(service, formatter, new MoRChatClientOptions
            { ModelId = options.ModelId, MaxPromptTokens = options.MaxPromptTokens, DefaultMaxOutputTokens = maxTokens });
        parser = new OpenAiRequests(options.ModelId, maxTokens);
        keyHash = options.ApiKey is null ? null : SHA256.HashData(Encoding.UTF8.GetBytes(options.ApiKey));

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<IHostLifetime, NoSignalLifetime>();   // the caller decides when to stop (mor serve: Ctrl+C, SIGTERM)
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = options.ShutdownTimeout);
        builder.WebHost.UseKestrel(k =>
        {
            k.Listen(options.BindAddress(), options.Port);
            k.Limits.MaxRequestBodySize = DrainLimit;   // ReadBody enforces MaxBodyBytes itself
            k.AddServerHeader = false;
        });
        app = builder.Build();
        Map(app);
    }

    /// <summary>Starts listening; <see cref="Address"/> then holds the bound address (the real port when 0 was asked).</summary>
    public static async Task<MoRServer> StartAsync(IGenerationService service, ServerOptions options, IChatFormatter? formatter = null,
        CancellationToken cancel = default)
    {
        var server = new MoRServer(service, options, formatter);
        await server.app.StartAsync(cancel).ConfigureAwait(false);
        string address = server.app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server.Address = new Uri(address.Replace("://[::]", "://[::1]").Replace("://0.0.0.0", "://127.0.0.1"));
        return server;
    }

    /// <summary>Stops accepting requests and cancels running generations.</summary>
    public Task StopAsync() => app.StopAsync();

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync().ConfigureAwait(false);
        await app.DisposeAsync().ConfigureAwait(false);
    }

    private static readonly string[] Endpoints = ["/v1/models", "/v1/completions", "/v1/chat/completions", "/health", "/metrics"];

    private void Map(WebApplication web)
    {
        var stopping = web.Lifetime.ApplicationStopping;
        web.Use(async (ctx, next) =>
        {
            string path = ctx.Request.Path.Value ?? "";
            string label = Endpoints.FirstOrDefault(e => path.StartsWith(e, StringComparison.Ordinal)) ?? "other";
            using var _ = Metrics.Track();
            try { await next(ctx); }
            finally { Metrics.Record(label, ctx.RequestAborted.IsCancellationRequested ? 499 : ctx.Response.StatusCode); }
        });
        web.Use(async (ctx, next) =>
        {
            if (keyHash is not null && ctx.Request.Path.StartsWithSegments("/v1") && !Authorized(ctx.Request.Headers.Authorization.ToString()))
            {
                ctx.Response.Headers.WWWAuthenticate = "Bearer";
                await WriteError(ctx, new ApiException(401, "Incorrect or missing API key: send the header 'Authorization: Bearer <key>'",
                    code: "invalid_api_key"));
                return;
            }
            await next(ctx);
        });

        web.MapGet("/health", () => Results.Json(new
        {
            status = "ok",
            model = options.ModelId,
            context_length = service.ContextLength,
            queue_depth = service.Metrics.QueueDepth,
            active = service.Metrics.Active,
        }));
        web.MapGet("/metrics", () => Results.Text(Metrics.Render(service.Metrics, options.ModelId), ServerMetrics.ContentType));
        web.MapGet("/v1/models", () => Results.Text(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(ModelJson()),
        }.ToJsonString(Json), "application/json"));
        web.MapGet("/v1/models/{id}", (HttpContext ctx, string id) => id == options.ModelId
            ? Results.Text(ModelJson().ToJsonString(Json), "application/json")
            : Results.Text(new ApiException(404, $"model: '{id}' is not served here; this server serves '{options.ModelId}'",
                param: "model", code: "model_not_found").ToJson().ToJsonString(Json), "application/json", statusCode: 404));
        web.MapPost("/v1/chat/completions", ctx => Handle(ctx, "messages", stopping, ChatCompletion));
        web.MapPost("/v1/completions", ctx => Handle(ctx, "prompt", stopping, Completion));
        web.MapFallback(ctx => WriteError(ctx, new ApiException(404, $"unknown path {ctx.Request.Method} {ctx.Request.Path}; " +
            "endpoints: GET /v1/models, POST /v1/completions, POST /v1/chat/completions, GET /health, GET /metrics", code: "unknown_url")));
    }

    private JsonObject ModelJson() => new()
    {
        ["id"] = options.ModelId, ["object"] = "model", ["created"] = created, ["owned_by"] = "morsharp",
        ["context_length"] = service.ContextLength,
    };

    private bool Authorized(string header)
    {
        const string prefix = "Bearer ";
        if (!header.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) return false;
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(header[prefix.Length..].Trim()));   // equal lengths: nothing leaks by timing
        return CryptographicOperations.FixedTimeEquals(hash, keyHash);
    }

    /// <summary>Reads the body, runs the endpoint with a token that the client's disconnect and the server's stop both
    /// cancel, and turns exceptions into OpenAI error objects (or, once a stream has started, into an error event).</summary>
    private async Task Handle(HttpContext ctx, string promptField, CancellationToken stopping,
        Func<HttpContext, JsonObject, CancellationToken, Task> endpoint)
    {
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, stopping);
        try
        {
            var body = await ReadBody(ctx, cancel.Token);
            await endpoint(ctx, body, cancel.Token);
        }
        catch (Exception) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // the client went away: its generation has been cancelled, nobody is left to answer
        }
        catch (Exception e)
        {
            var error = e is OperationCanceledException && stopping.IsCancellationRequested
                ? new ApiException(503, "the server is shutting down", "server_error", code: "server_shutting_down")
                : ApiException.From(e, promptField);
            if (error.Status >= 500 && options.Log is { } log) log.WriteLine($"error: {ctx.Request.Path}: {e}");
            try
            {
                if (!ctx.Response.HasStarted) await WriteError(ctx, error);
                else await WriteEvent(ctx, error.ToJson().ToJsonString(Json), CancellationToken.None);
            }
            catch (Exception) when (ctx.RequestAborted.IsCancellationRequested) { }
        }
    }

    /// <summary>Reads the body (at most <see cref="ServerOptions.MaxBodyBytes"/>) as a JSON object. A larger body is still read
    /// to its end, up to <see cref="DrainLimit"/>, before the 413 goes out: answering while the client is still sending makes
    /// the socket close with unread data, and the TCP reset that follows can destroy the response before the client reads it.</summary>
    private async Task<JsonObject> ReadBody(HttpContext ctx, CancellationToken cancel)
    {
        long limit = options.MaxBodyBytes, drain = DrainLimit;
        if (ctx.Request.ContentLength > drain) throw TooLarge(ctx.Request.ContentLength);      // too large to drain: answer now
        var body = new MemoryStream();
        var buffer = new byte[16 * 1024];
        long total = 0;
        try
        {
            for (int n; (n = await ctx.Request.Body.ReadAsync(buffer, cancel)) > 0;)
            {
                if (total + n <= limit) body.Write(buffer, 0, n);
                total += n;
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge) { throw TooLarge(null); }
        if (total > limit) throw TooLarge(total);
        body.Position = 0;
        JsonNode? node;
        try { node = await JsonNode.ParseAsync(body, cancellationToken: cancel); }
        catch (JsonException e) { throw new ApiException(400, $"request body: not valid JSON ({e.Message})", code: "invalid_json"); }
        return node as JsonObject ?? throw new ApiException(400, "request body: expected a JSON object", code: "invalid_json");
    }

    /// <summary>How much of an oversized body is read and dropped so that the 413 reaches the client (Kestrel's own limit).</summary>
    private long DrainLimit => Math.Max(4 * options.MaxBodyBytes, 1 << 20);

    private ApiException TooLarge(long? length) =>
        new(413, $"request body: {(length is { } n ? $"{n} bytes" : "too large")}, more than the limit of {options.MaxBodyBytes} bytes",
            code: "request_too_large");

    private async Task ChatCompletion(HttpContext ctx, JsonObject body, CancellationToken cancel)
    {
        var request = parser.ParseChat(body);
        if (!request.Stream)
        {
            var r = await chat.GetResponseAsync(request.Messages, request.Options, cancel);
            var json = new JsonObject
            {
                ["id"] = r.ResponseId, ["object"] = "chat.completion", ["created"] = Unix(r.CreatedAt), ["model"] = options.ModelId,
                ["choices"] = new JsonArray(new JsonObject
                {
                    ["index"] = 0,
                    ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = r.Text },
                    ["logprobs"] = null,
                    ["finish_reason"] = Finish(r.FinishReason),
                }),
                ["usage"] = Usage(r.Usage),
                ["mor_depths"] = Depths(r.AdditionalProperties?["mor_depths"] as int[]),
            };
            await WriteJson(ctx, json, cancel);
            return;
        }

        await using var updates = chat.GetStreamingResponseAsync(request.Messages, request.Options, cancel).GetAsyncEnumerator(cancel);
        bool more = await updates.MoveNextAsync();              // admission, validation and prefill happen here: errors are still statuses
        var first = updates.Current;
        long createdAt = Unix(first.CreatedAt);
        JsonObject Chunk(JsonObject delta, string? finish) => new()
        {
            ["id"] = first.ResponseId, ["object"] = "chat.completion.chunk", ["created"] = createdAt, ["model"] = options.ModelId,
            ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["delta"] = delta, ["logprobs"] = null, ["finish_reason"] = finish }),
        };
        StartEvents(ctx);
        await WriteEvent(ctx, Chunk(new JsonObject { ["role"] = "assistant", ["content"] = "" }, null).ToJsonString(Json), cancel);
        UsageDetails? usage = null;
        for (; more; more = await updates.MoveNextAsync())
        {
            var u = updates.Current;
            if (u.Text.Length > 0) await WriteEvent(ctx, Chunk(new JsonObject { ["content"] = u.Text }, null).ToJsonString(Json), cancel);
            usage = u.Contents.OfType<UsageContent>().FirstOrDefault()?.Details ?? usage;
            if (u.FinishReason is { } f) await WriteEvent(ctx, Chunk(new JsonObject(), Finish(f)).ToJsonString(Json), cancel);
        }
        if (request.IncludeUsage)
            await WriteEvent(ctx, new JsonObject
            {
                ["id"] = first.ResponseId, ["object"] = "chat.completion.chunk", ["created"] = createdAt, ["model"] = options.ModelId,
                ["choices"] = new JsonArray(), ["usage"] = Usage(usage),
            }.ToJsonString(Json), cancel);
        await WriteEvent(ctx, "[DONE]", cancel);
    }

    private async Task Completion(HttpContext ctx, JsonObject body, CancellationToken cancel)
    {
        var request = parser.ParseCompletion(body);
        var tokenizer = service.Tokenizer;
        int[] prompt = request.PromptIds ?? tokenizer.Encode(request.PromptText!);
        if (request.PromptIds is null && tokenizer.BosId is { } bos) prompt = [bos, .. prompt];
        chat.CheckPromptLength(prompt.Length, "prompt");
        var generation = MoRChatClient.ToGenerationOptions(request.Options, [], defaultMaxTokens: Math.Min(16, maxTokens));   // OpenAI's default: 16
        string id = "cmpl-" + Guid.NewGuid().ToString("N")[..24];
        long createdAt = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string echo = request.Echo ? request.PromptText ?? tokenizer.Decode(request.PromptIds) : "";
        JsonObject Response(string text, string? finish, JsonNode? usage) => new()
        {
            ["id"] = id, ["object"] = "text_completion", ["created"] = createdAt, ["model"] = options.ModelId,
            ["choices"] = new JsonArray(new JsonObject { ["text"] = text, ["index"] = 0, ["logprobs"] = null, ["finish_reason"] = finish }),
            ["usage"] = usage,
        };

        if (!request.Stream)
        {
            var (text, tokens, finish) = await service.CompleteAsync(prompt, generation, cancel);
            var json = Response(echo + text, Finish(finish), Usage(prompt.Length, tokens.Count));
            json["mor_depths"] = Depths(tokens.Select(t => t.Depth).ToArray());
            await WriteJson(ctx, json, cancel);
            return;
        }

        await using var tokensOut = service.GenerateAsync(prompt, generation, cancel).GetAsyncEnumerator(cancel);
        bool more = await tokensOut.MoveNextAsync();
        StartEvents(ctx);
        if (echo.Length > 0) await WriteEvent(ctx, Response(echo, null, null).ToJsonString(Json), cancel);
        int generated = 0;
        for (; more; more = await tokensOut.MoveNextAsync())
        {
            var t = tokensOut.Current;
            if (t.Id >= 0) generated++;
            if (t.Text.Length > 0 || t.Finish is not null)
                await WriteEvent(ctx, Response(t.Text, t.Finish is { } f ? Finish(f) : null, null).ToJsonString(Json), cancel);
        }
        if (request.IncludeUsage)
        {
            var last = Response("", null, Usage(prompt.Length, generated));
            last["choices"] = new JsonArray();
            await WriteEvent(ctx, last.ToJsonString(Json), cancel);
        }
        await WriteEvent(ctx, "[DONE]", cancel);
    }

    private static long Unix(DateTimeOffset? t) => (t ?? DateTimeOffset.UtcNow).ToUnixTimeSeconds();
    private static string Finish(ChatFinishReason? f) => f?.Value ?? "stop";
    private static string Finish(FinishReason f) => f == FinishReason.Length ? "length" : "stop";
    private static JsonArray Depths(int[]? depths) => new((depths ?? []).Select(d => (JsonNode?)d).ToArray());
    private static JsonObject Usage(UsageDetails? u) => Usage((int)(u?.InputTokenCount ?? 0), (int)(u?.OutputTokenCount ?? 0));
    private static JsonObject Usage(int prompt, int completion) =>
        new() { ["prompt_tokens"] = prompt, ["completion_tokens"] = completion, ["total_tokens"] = prompt + completion };

    private static async Task WriteJson(HttpContext ctx, JsonObject json, CancellationToken cancel)
    {
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(json.ToJsonString(Json), cancel);
    }

    private static Task WriteError(HttpContext ctx, ApiException e)
    {
        ctx.Response.StatusCode = e.Status;
        if (e.Status == StatusCodes.Status429TooManyRequests) ctx.Response.Headers.RetryAfter = "1";
        ctx.Response.ContentType = "application/json";
        return ctx.Response.WriteAsync(e.ToJson().ToJsonString(Json));
    }

    private static void StartEvents(HttpContext ctx)
    {
        ctx.Response.ContentType = "text/event-stream";
        ctx.Response.Headers.CacheControl = "no-cache";
        ctx.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
    }

    /// <summary>One server-sent event <c>data: …</c>, flushed so that the client sees each token as it comes.</summary>
    private static async Task WriteEvent(HttpContext ctx, string data, CancellationToken cancel)
    {
        await ctx.Response.WriteAsync("data: " + data + "\n\n", cancel);
        await ctx.Response.Body.FlushAsync(cancel);
    }

    /// <summary>No console signal handling inside the library: tests run several servers in one process, and
    /// <c>mor serve</c> handles Ctrl+C and SIGTERM itself.</summary>
    private sealed class NoSignalLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
