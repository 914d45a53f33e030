using System.Text.Json;

namespace MoRSharp.Data.Tokenizers;

/// <summary>One turn of a conversation: a role (<c>system</c>, <c>user</c>, <c>assistant</c>, <c>tool</c>) and its text.</summary>
public sealed record ChatTurn(string Role, string Content);

/// <summary>
/// Turns a conversation into the prompt text a chat model was trained on, using the Hugging Face chat template of its
/// folder (a Jinja template, rendered by <see cref="JinjaTemplate"/> the way <c>apply_chat_template</c> renders it:
/// <c>messages</c>, <c>add_generation_prompt</c>, <c>bos_token</c>, <c>eos_token</c>, <c>unk_token</c>, <c>pad_token</c>).
/// <para>The rendered text contains the special tokens as text (e.g. <c>&lt;|im_start|&gt;</c>); tokenize it with a
/// tokenizer that maps them to their ids. A BOS that the template itself writes is part of the text, so do not prepend
/// another one.</para>
/// <para><b>Where the template comes from</b> (<see cref="FromModelFolder"/>): <c>chat_template.jinja</c>, else
/// <c>chat_template.json</c>, else the <c>chat_template</c> field of <c>tokenizer_config.json</c> (a string, or a list of
/// named templates of which <c>default</c> is used). A folder without one gets <see cref="Default"/>: a plain transcript,
/// <c>"User: …\n\nAssistant: …\n\n"</c>, ending in <c>"Assistant:"</c> when a reply is requested — suited to base models
/// trained on plain text.</para>
/// </summary>
public sealed class ChatTemplate
{
    /// <summary>The default template's source: "Role: content" blocks separated by blank lines.</summary>
    public const string DefaultSource =
        "{% for message in messages %}{{ message['role'] | capitalize }}: {{ message['content'] | trim }}\n\n{% endfor %}" +
        "{% if add_generation_prompt %}Assistant:{% endif %}";

    private readonly JinjaTemplate template;
    private readonly Dictionary<string, object?> specialTokens;

    /// <summary>The template text.</summary>
    public string Source { get; }
    /// <summary>Where the template came from (a file name, or "default").</summary>
    public string Origin { get; }
    public string? BosToken => specialTokens.GetValueOrDefault("bos_token") as string;
    public string? EosToken => specialTokens.GetValueOrDefault("eos_token") as string;
    /// <summary>True for <see cref="Default"/> (the folder had no template).</summary>
    public bool IsDefault { get; }

    private ChatTemplate(string source, string origin, Dictionary<string, object?> specialTokens, bool isDefault)
    {
        Source = source;
        Origin = origin;
        this.specialTokens = specialTokens;
        IsDefault = isDefault;
        template = JinjaTemplate.Parse(source, origin);
    }

    /// <summary>The plain transcript template (<see cref="DefaultSource"/>), with no special tokens.</summary>
    public static ChatTemplate Default { get; } = new(DefaultSource, "default chat template", new Dictionary<string, object?>(), isDefault: true);

    /// <summary>A template from its Jinja source; <paramref name="bosToken"/>/<paramref name="eosToken"/> fill the template variables.</summary>
    public static ChatTemplate FromSource(string source, string? bosToken = null, string? eosToken = null, string origin = "chat template")
    {
        var specials = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (bosToken is not null) specials["bos_token"] = bosToken;
        if (eosToken is not null) specials["eos_token"] = eosToken;
        return new ChatTemplate(source, origin, specials, isDefault: false);
    }

    /// <summary>
    /// The chat template of a model folder (see the class comment for the search order), or <see cref="Default"/>.
    /// Special-token strings come from <c>tokenizer_config.json</c>, else <c>special_tokens_map.json</c>, else the
    /// tokenizer's BOS/EOS when <paramref name="tokenizer"/> is given.
    /// </summary>
    public static ChatTemplate FromModelFolder(string dir, ITokenizer? tokenizer = null)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"model folder {dir} does not exist");
        var specials = ReadSpecialTokens(dir, tokenizer);
        string jinja = Path.Combine(dir, "chat_template.jinja");
        if (File.Exists(jinja)) return new ChatTemplate(File.ReadAllText(jinja), jinja, specials, false);
        string json = Path.Combine(dir, "chat_template.json");
        if (File.Exists(json) && TemplateField(json) is { } fromJson) return new ChatTemplate(fromJson, json, specials, false);
        string config = Path.Combine(dir, "tokenizer_config.json");
        if (File.Exists(config) && TemplateField(config) is { } fromConfig) return new ChatTemplate(fromConfig, config, specials, false);
        return new ChatTemplate(DefaultSource, "default chat template", specials, isDefault: true);
    }

    /// <summary>
    /// Renders the conversation; with <paramref name="addGenerationPrompt"/> the text ends where the assistant's reply starts.
    /// Throws <see cref="ChatTemplateException"/> when the template rejects the conversation (e.g. roles that do not
    /// alternate) or uses something the interpreter does not support.
    /// </summary>
    public string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt, IReadOnlyDictionary<string, object?>? extraVariables = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var vars = new Dictionary<string, object?>(specialTokens, StringComparer.Ordinal)
        {
            ["messages"] = messages.Select(m => (object?)new Dictionary<string, object?>(StringComparer.Ordinal) { ["role"] = m.Role, ["content"] = m.Content }).ToList(),
            ["add_generation_prompt"] = addGenerationPrompt,
        };
        if (extraVariables is not null) foreach (var (k, v) in extraVariables) vars[k] = v;
        return template.Render(vars);
    }

    private static string? TemplateField(string path)
    {
        using var doc = ParseJson(path);
        if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("chat_template", out var t)) return null;
        switch (t.ValueKind)
        {
            case JsonValueKind.Null: return null;
            case JsonValueKind.String: return t.GetString();
            case JsonValueKind.Array:
                // [{"name": "default", "template": "…"}, {"name": "tool_use", …}]: the default one (else the first).
                string? first = null;
                foreach (var e in t.EnumerateArray())
                {
                    if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty("template", out var tt) || tt.ValueKind != JsonValueKind.String)
                        throw new DataException($"{path}: chat_template list entries must be {{\"name\": …, \"template\": \"…\"}}");
                    first ??= tt.GetString();
                    if (e.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String && n.GetString() == "default") return tt.GetString();
                }
                return first;
            default:
                throw new DataException($"{path}: chat_template must be a string or a list of named templates");
        }
    }

    private static Dictionary<string, object?> ReadSpecialTokens(string dir, ITokenizer? tokenizer)
    {
        var specials = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var file in new[] { "tokenizer_config.json", "special_tokens_map.json" })
        {
            string path = Path.Combine(dir, file);
            if (!File.Exists(path)) continue;
            using var doc = ParseJson(path);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) continue;
            foreach (var key in new[] { "bos_token", "eos_token", "unk_token", "pad_token" })
                if (!specials.ContainsKey(key) && doc.RootElement.TryGetProperty(key, out var v))
                {
                    string? s = v.ValueKind == JsonValueKind.String ? v.GetString()
                        : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
                    if (s is not null) specials[key] = s;
                }
        }
        if (tokenizer is not null)
        {
            if (!specials.ContainsKey("bos_token") && tokenizer.BosId is int b) specials["bos_token"] = tokenizer.DecodeToken(b);
            if (!specials.ContainsKey("eos_token") && tokenizer.EosId is int e) specials["eos_token"] = tokenizer.DecodeToken(e);
        }
        return specials;
    }

    private static JsonDocument ParseJson(string path)
    {
        try { return JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = true }); }
        catch (JsonException e) { throw new DataException($"{path}: not valid JSON ({e.Message})", e); }
    }
}
