using MoRSharp.Chat;
using MoRSharp.Data.Tokenizers;

namespace MoRSharp.Tests.Chat;

public class ChatFormatsTests
{
    [Fact]
    public void Special_token_strings_become_their_ids_only_when_asked()
    {
        var gpt2 = TokenizerFactory.Gpt2();
        var text = "Hi<|endoftext|>there";
        var ids = gpt2.EncodeWithSpecialTokens(text);
        Assert.Equal([.. gpt2.Encode("Hi"), 50256, .. gpt2.Encode("there")], ids);
        Assert.DoesNotContain(50256, gpt2.Encode(text));        // plain Encode keeps treating it as text
    }

    [Fact]
    public void A_template_rendering_is_encoded_with_its_special_tokens()
    {
        var gpt2 = TokenizerFactory.Gpt2();
        var template = ChatTemplate.FromSource(
            "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}",
            eosToken: "<|endoftext|>");
        var f = new TemplateChatFormatter(template);
        Assert.Equal(["<|endoftext|>"], f.StopStrings);
        var ids = ChatFormats.Encode(f, gpt2, [new ChatTurn("user", "hello")]);
        Assert.Equal(1, ids.Count(i => i == 50256));
        Assert.Equal("user: hello<|endoftext|>assistant:", gpt2.Decode(ids));
    }

    [Fact]
    public void A_folder_without_a_template_uses_the_plain_format()
    {
        string dir = Path.Combine(Path.GetTempPath(), "mor-chatfmt-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try { Assert.IsType<PlainChatFormatter>(ChatFormats.ForModelFolder(dir)); }
        finally { Directory.Delete(dir, true); }
    }
}
