using MoRSharp.Data.Tokenizers;

namespace MoRSharp.Inference;

/// <summary>One chat message.</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>
/// Turns a conversation into prompt tokens. <see cref="Plain"/> is the default for models without a chat template
/// ("System: …", "User: …", "Assistant: …" lines; generation stops at the next "\nUser:").
/// </summary>
public sealed class ChatFormat
{
    private readonly Func<IReadOnlyList<ChatMessage>, bool, string> render;
    private readonly ITokenizer tokenizer;

    public string Name { get; }
    /// <summary>Strings that end a reply in this format (besides the EOS token).</summary>
    public IReadOnlyList<string> StopStrings { get; }

    public ChatFormat(string name, ITokenizer tokenizer, Func<IReadOnlyList<ChatMessage>, bool, string> render, IReadOnlyList<string> stopStrings)
    {
        Name = name;
        this.tokenizer = tokenizer;
        this.render = render;
        StopStrings = stopStrings;
    }

    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) => render(messages, addGenerationPrompt);

    public int[] Encode(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) =>
        tokenizer.Encode(Render(messages, addGenerationPrompt));

    public static ChatFormat Plain(ITokenizer tokenizer) => new("plain", tokenizer, (messages, gen) =>
    {
        var sb = new System.Text.StringBuilder();
        foreach (var m in messages)
            sb.Append(char.ToUpperInvariant(m.Role[0])).Append(m.Role[1..]).Append(": ").Append(m.Content).Append('\n');
        if (gen) sb.Append("Assistant:");
        return sb.ToString();
    }, ["\nUser:", "\nSystem:"]);

    /// <summary>The format for a model folder: its chat template where it has one, else <see cref="Plain"/>.</summary>
    public static ChatFormat ForModelFolder(string dir, ITokenizer tokenizer) => Plain(tokenizer);
}
