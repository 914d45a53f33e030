using MoRSharp.Data.Tokenizers;

namespace MoRSharp.Tests.Data;

/// <summary>
/// The real chat templates of common chat models, written here as literal strings (the JSON-decoded value of their
/// tokenizer_config.json "chat_template"), rendered by our Jinja interpreter and compared with the output of the Python
/// jinja2 package (3.1.2) in Hugging Face's environment (trim_blocks, lstrip_blocks, loopcontrols) for the same messages.
/// </summary>
public static class RealChatTemplates
{
    /// <summary>smollm2 chat template, as in the model's tokenizer_config.json (JSON-decoded).</summary>
    public const string SmolLM2Instruct = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// <summary>llama2 chat template, as in the model's tokenizer_config.json (JSON-decoded).</summary>
    public const string Llama2Chat = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

    /// <summary>llama3 chat template, as in the model's tokenizer_config.json (JSON-decoded).</summary>
    public const string Llama3Instruct = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    /// <summary>zephyr chat template, as in the model's tokenizer_config.json (JSON-decoded).</summary>
    public const string Zephyr = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

    /// <summary>qwen chat template, as in the model's tokenizer_config.json (JSON-decoded).</summary>
    public const string Qwen25 = "{%- if messages[0]['role'] == 'system' %}\n    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n{%- else %}\n    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n{%- endif %}\n{%- for message in messages %}\n    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\") %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";

}

public class ChatTemplateTests
{
    private static readonly ChatTurn[] A =
    [
        new("system", "You are terse."), new("user", "Hi there!"), new("assistant", " Hello. "), new("user", "What is 2+2?"),
    ];
    private static readonly ChatTurn[] B = [new("user", "Tell me a joke.")];
    private static readonly ChatTurn[] C = [new("user", "a"), new("user", "b")];

    /// <summary>Expected output per template / conversation / add_generation_prompt, from Python jinja2 (see the class comment).</summary>
    private static readonly Dictionary<string, string> Expected = new()
    {
        ["SmolLM2Instruct/A/true"] = "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n Hello. <|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        ["SmolLM2Instruct/A/false"] = "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n Hello. <|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
        ["SmolLM2Instruct/B/true"] = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nTell me a joke.<|im_end|>\n<|im_start|>assistant\n",
        ["SmolLM2Instruct/B/false"] = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nTell me a joke.<|im_end|>\n",
        ["SmolLM2Instruct/C/true"] = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\na<|im_end|>\n<|im_start|>user\nb<|im_end|>\n<|im_start|>assistant\n",
        ["SmolLM2Instruct/C/false"] = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\na<|im_end|>\n<|im_start|>user\nb<|im_end|>\n",
        ["Llama2Chat/A/true"] = "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there! [/INST] Hello. </s><s>[INST] What is 2+2? [/INST]",
        ["Llama2Chat/A/false"] = "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there! [/INST] Hello. </s><s>[INST] What is 2+2? [/INST]",
        ["Llama2Chat/B/true"] = "<s>[INST] Tell me a joke. [/INST]",
        ["Llama2Chat/B/false"] = "<s>[INST] Tell me a joke. [/INST]",
        ["Llama2Chat/C/true"] = "ERROR: Conversation roles must alternate user/assistant/user/assistant/...",
        ["Llama2Chat/C/false"] = "ERROR: Conversation roles must alternate user/assistant/user/assistant/...",
        ["Llama3Instruct/A/true"] = "<s><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        ["Llama3Instruct/A/false"] = "<s><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>",
        ["Llama3Instruct/B/true"] = "<s><|start_header_id|>user<|end_header_id|>\n\nTell me a joke.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        ["Llama3Instruct/B/false"] = "<s><|start_header_id|>user<|end_header_id|>\n\nTell me a joke.<|eot_id|>",
        ["Llama3Instruct/C/true"] = "<s><|start_header_id|>user<|end_header_id|>\n\na<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nb<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        ["Llama3Instruct/C/false"] = "<s><|start_header_id|>user<|end_header_id|>\n\na<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nb<|eot_id|>",
        ["Zephyr/A/true"] = "<|system|>\nYou are terse.</s>\n<|user|>\nHi there!</s>\n<|assistant|>\n Hello. </s>\n<|user|>\nWhat is 2+2?</s>\n<|assistant|>\n",
        ["Zephyr/A/false"] = "<|system|>\nYou are terse.</s>\n<|user|>\nHi there!</s>\n<|assistant|>\n Hello. </s>\n<|user|>\nWhat is 2+2?</s>\n",
        ["Zephyr/B/true"] = "<|user|>\nTell me a joke.</s>\n<|assistant|>\n",
        ["Zephyr/B/false"] = "<|user|>\nTell me a joke.</s>\n",
        ["Zephyr/C/true"] = "<|user|>\na</s>\n<|user|>\nb</s>\n<|assistant|>\n",
        ["Zephyr/C/false"] = "<|user|>\na</s>\n<|user|>\nb</s>\n",
        ["Qwen25/A/true"] = "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n Hello. <|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        ["Qwen25/A/false"] = "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n Hello. <|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
        ["Qwen25/B/true"] = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nTell me a joke.<|im_end|>\n<|im_start|>assistant\n",
        ["Qwen25/B/false"] = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nTell me a joke.<|im_end|>\n",
        ["Qwen25/C/true"] = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\na<|im_end|>\n<|im_start|>user\nb<|im_end|>\n<|im_start|>assistant\n",
        ["Qwen25/C/false"] = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\na<|im_end|>\n<|im_start|>user\nb<|im_end|>\n",
        ["default/A/true"] = "System: You are terse.\n\nUser: Hi there!\n\nAssistant: Hello.\n\nUser: What is 2+2?\n\nAssistant:",
        ["default/A/false"] = "System: You are terse.\n\nUser: Hi there!\n\nAssistant: Hello.\n\nUser: What is 2+2?\n\n",
        ["default/B/true"] = "User: Tell me a joke.\n\nAssistant:",
        ["default/B/false"] = "User: Tell me a joke.\n\n",
        ["default/C/true"] = "User: a\n\nUser: b\n\nAssistant:",
        ["default/C/false"] = "User: a\n\nUser: b\n\n",
        ["tinyllama_folder/A/true"] = "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there! [/INST] Hello. </s><s>[INST] What is 2+2? [/INST]",
        ["tinyllama_folder/A/false"] = "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there! [/INST] Hello. </s><s>[INST] What is 2+2? [/INST]",
        ["tinyllama_folder/B/true"] = "<s>[INST] Tell me a joke. [/INST]",
        ["tinyllama_folder/B/false"] = "<s>[INST] Tell me a joke. [/INST]",
        ["tinyllama_folder/C/true"] = "ERROR: Conversation roles must alternate user/assistant/user/assistant/...",
        ["tinyllama_folder/C/false"] = "ERROR: Conversation roles must alternate user/assistant/user/assistant/...",
    };

    public static TheoryData<string, string, bool> Cases()
    {
        var data = new TheoryData<string, string, bool>();
        foreach (var name in new[] { "SmolLM2Instruct", "Llama2Chat", "Llama3Instruct", "Zephyr", "Qwen25", "default" })
            foreach (var conv in new[] { "A", "B", "C" })
                foreach (var gen in new[] { true, false })
                    data.Add(name, conv, gen);
        return data;
    }

    private static string Source(string name) => name switch
    {
        "SmolLM2Instruct" => RealChatTemplates.SmolLM2Instruct,
        "Llama2Chat" => RealChatTemplates.Llama2Chat,
        "Llama3Instruct" => RealChatTemplates.Llama3Instruct,
        "Zephyr" => RealChatTemplates.Zephyr,
        "Qwen25" => RealChatTemplates.Qwen25,
        _ => ChatTemplate.DefaultSource,
    };

    private static ChatTurn[] Conversation(string c) => c switch { "A" => A, "B" => B, _ => C };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Real_templates_render_like_jinja2(string name, string conv, bool gen)
    {
        var template = name == "default" ? ChatTemplate.Default : ChatTemplate.FromSource(Source(name), "<s>", "</s>", name);
        string expected = Expected[$"{name}/{conv}/{gen.ToString().ToLowerInvariant()}"];
        if (expected.StartsWith("ERROR: "))
        {
            var e = Assert.Throws<ChatTemplateException>(() => template.Render(Conversation(conv), gen));
            Assert.Contains(expected["ERROR: ".Length..], e.Message);
            return;
        }
        Assert.Equal(expected, template.Render(Conversation(conv), gen));
    }

    [Fact]
    public void Folder_template_and_special_tokens_come_from_tokenizer_config()
    {
        // The tiny-random Llama folder's tokenizer_config.json: the Llama-2 template with USE_DEFAULT_PROMPT (undefined → false).
        var template = ChatTemplate.FromModelFolder(SharedData.Path("tokenizers/llama"));
        Assert.False(template.IsDefault);
        Assert.Equal("<s>", template.BosToken);
        Assert.Equal("</s>", template.EosToken);
        foreach (var conv in new[] { "A", "B" })
            Assert.Equal(Expected[$"tinyllama_folder/{conv}/true"], template.Render(Conversation(conv), true));
        var e = Assert.Throws<ChatTemplateException>(() => template.Render(C, true));
        Assert.Contains("Conversation roles must alternate", e.Message);
    }

    [Fact]
    public void Folder_without_template_gets_the_plain_default_and_jinja_file_wins()
    {
        string dir = Path.Combine(Path.GetTempPath(), "mor-chat-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var plain = ChatTemplate.FromModelFolder(dir);
            Assert.True(plain.IsDefault);
            Assert.Equal("User: Tell me a joke.\n\nAssistant:", plain.Render(B, true));

            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
                """{"eos_token": {"content": "<|im_end|>"}, "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ messages[0].content }}{{ eos_token }}"}]}""");
            Assert.Equal("Tell me a joke.<|im_end|>", ChatTemplate.FromModelFolder(dir).Render(B, false));

            File.WriteAllText(Path.Combine(dir, "chat_template.jinja"), "J:{{ messages | length }}\n");
            Assert.Equal("J:1", ChatTemplate.FromModelFolder(dir).Render(B, false));   // one trailing newline is dropped, as in Jinja
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>Expressions and whitespace rules checked against Python jinja2 3.1.2 (outputs copied from it).</summary>
    [Theory]
    [InlineData("{% for i in [1,2] %}{% if i == 2 %}[{{ x }}]{% endif %}{% set x = i %}{% endfor %}|{{ x }}", "[]|")]
    [InlineData("{% set x = 5 %}{% for i in [1,2] %}{% set x = i %}{% endfor %}{{ x }}", "5")]
    [InlineData("{{ true }} {{ none }} {{ 1.0 }} {{ [1,'a'] }} {{ {'a':1} }} {{ undefined_var }}|", "True None 1.0 [1, 'a'] {'a': 1} |")]
    [InlineData("  {% if true %}\n  x\n  {% endif %}\nend\n", "  x\nend")]
    [InlineData("a {% if true %}  {% endif %} b", "a    b")]
    [InlineData("{{ 'a' }}  {# c #}\n  b", "a    b")]
    [InlineData("{{ 7 % 3 }} {{ -7 % 3 }} {{ 7 // 2 }} {{ 7 / 2 }} {{ 'a' ~ 1 }} {{ 1 == 1.0 }} {{ true == 1 }}", "1 2 3 3.5 a1 True True")]
    [InlineData("{{ 'abc'[1:] }} {{ [1,2,3][-1] }} {{ [1,2,3][:-1] }}", "bc 3 [1, 2]")]
    [InlineData("{{ (x is defined) }} {{ none is none }} {{ 'a' is string }}", "False True True")]
    [InlineData("{{ not 'a' in 'abc' }} {{ 'x' if false }}|{{ 1 if true else 2 }}", "False |1")]
    [InlineData("{{ '  hi  ' | trim }}|{{ [1,2] | length }}|{{ 'ab'|upper }}|{{ 'hello world'|title }}|{{ 'hello World'|capitalize }}", "hi|2|AB|Hello World|Hello world")]
    [InlineData("{% set ns = namespace(a=1) %}{% for i in [1,2] %}{% set ns.a = ns.a + i %}{% endfor %}{{ ns.a }}", "4")]
    [InlineData("{{ 'a\\nb' }}", "a\nb")]
    [InlineData("{% for i in [1,2,3] %}{% if i == 2 %}{% continue %}{% endif %}{{ i }}{% endfor %}", "13")]
    [InlineData("{{ {'a': 1, 'b': [1, 'x', none, true]} | tojson }}", "{\"a\": 1, \"b\": [1, \"x\", null, true]}")]
    [InlineData("{{ 3.5 }} {{ 1e3 }} {{ 2 ** 10 }} {{ 10 / 5 }}", "3.5 1000.0 1024 2.0")]
    [InlineData("{{- ' a ' -}}\n  b  {%- if true -%}  c  {%- endif -%}  d", " a bcd")]
    [InlineData("{% for i in [1,2,3] %}{{ loop.index }}{{ loop.first }}{{ loop.last }}{% if loop.last %}{% break %}{% endif %},{% endfor %}", "1TrueFalse,2FalseFalse,3FalseTrue")]
    [InlineData("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", "a=1;b=2;")]
    [InlineData("{{ 'Hello'.startswith('He') }} {{ ' x '.strip() }} {{ 'xxhixx'.strip('x') }} {{ 'a,b'.split(',') }}", "True x hi ['a', 'b']")]
    public void Expressions_match_jinja2(string template, string expected) =>
        Assert.Equal(expected, JinjaTemplate.Parse(template).Render(new Dictionary<string, object?>()));

    /// <summary>Templates using namespace(), "is not none", "in message", slices, loop fields, dict .get and default — a
    /// Llama-3.1-style system header (abridged), Zephyr/Alpaca-style variants — against Python jinja2 3.1.2's output.</summary>
    [Theory]
    [InlineData("{{- bos_token }}{%- if not date_string is defined %}{%- if strftime_now is defined %}{%- set date_string = strftime_now(\"%d %b %Y\") %}{%- else %}{%- set date_string = \"26 Jul 2024\" %}{%- endif %}{%- endif %}{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}{%- set messages = messages[1:] %}{%- else %}{%- set system_message = \"\" %}{%- endif %}{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}{%- if tools is not none %}{{- \"Environment: ipython\\n\" }}{%- endif %}{{- \"Cutting Knowledge Date: December 2023\\n\" }}{{- \"Today Date: \" + date_string + \"\\n\\n\" }}{{- system_message }}{{- \"<|eot_id|>\" }}{%- for message in messages %}{%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}",
        "<s><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello world<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")]
    [InlineData("{%- for message in messages %}{{- '<|' + message['role'] + '|>\\n' }}{{- message['content'] + eos_token }}{%- if loop.last and add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}{%- endfor %}",
        "<|system|>\n Be brief. </s><|user|>\nHello world</s><|assistant|>\nHi!</s><|user|>\nBye</s><|assistant|>\n")]
    [InlineData("{% for message in messages %}{% if message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'].strip() }}{% elif message['role'] == 'assistant' %}{{ '### Response:\\n' + message['content'] }}{% endif %}{% if not loop.last %}{{ '\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '\\n\\n### Response:\\n' }}{% endif %}",
        "\n\n### Instruction:\nHello world\n\n### Response:\nHi!\n\n### Instruction:\nBye\n\n### Response:\n")]
    [InlineData("{{ messages[0]['content'][:5] }}-{{ messages[0]['content'][::-1] }}-{{ messages[0]['content'][-3:] }}-{{ 'a' if messages|length > 2 else 'b' }}-{{ messages[1:]|length }}",
        " Be b- .feirb eB -f. -a-3")]
    [InlineData("{% for m in messages %}{{ loop.index }}/{{ loop.length }}:{{ loop.revindex }}{{ ',' if not loop.last }}{% endfor %}",
        "1/4:4,2/4:3,3/4:2,4/4:1")]
    [InlineData("{% if messages[0].role is defined and messages[0].role is string and messages[0].nope is undefined %}ok{% endif %} {{ messages[0].get('role') }} {{ messages[0].get('nope', 'dflt') }} {{ none | default('d') }} {{ undefined_x | default('d') }} {{ '' | default('e', true) }}",
        "ok system dflt None d e")]
    public void More_template_features_match_jinja2(string template, string expected)
    {
        var messages = new List<object?>
        {
            new Dictionary<string, object?> { ["role"] = "system", ["content"] = " Be brief. " },
            new Dictionary<string, object?> { ["role"] = "user", ["content"] = "Hello world" },
            new Dictionary<string, object?> { ["role"] = "assistant", ["content"] = "Hi!" },
            new Dictionary<string, object?> { ["role"] = "user", ["content"] = "Bye" },
        };
        var vars = new Dictionary<string, object?>
        {
            ["messages"] = messages, ["add_generation_prompt"] = true, ["bos_token"] = "<s>", ["eos_token"] = "</s>", ["tools"] = null,
        };
        Assert.Equal(expected, JinjaTemplate.Parse(template).Render(vars));
    }

    [Theory]
    [InlineData("{% macro f() %}x{% endmacro %}", "line 1, column 1", "unsupported statement '{% macro %}'")]
    [InlineData("ok\n  {{ x | wordwrap }}", "line 2, column 8", "unknown filter 'wordwrap'")]
    [InlineData("{% if x %}never closed", "line 1, column", "expected {% elif %} or {% else %} or {% endif %}")]
    [InlineData("{{ 'abc' ", "line 1, column 1", "never closed")]
    [InlineData("{{ x $ y }}", "line 1, column 6", "unexpected character '$'")]
    [InlineData("{{ messages[5]['role'] }}", "line 1, column 15", "is undefined")]
    [InlineData("{{ 'a' + 1 }}", "line 1, column 8", "unsupported operand types for +")]
    [InlineData("{% for m in messages if m %}{% endfor %}", "line 1, column 22", "not supported")]
    public void Unsupported_or_bad_templates_name_the_position(string template, string where, string what)
    {
        var e = Assert.ThrowsAny<ChatTemplateException>(() =>
            JinjaTemplate.Parse(template, "tpl").Render(new Dictionary<string, object?> { ["messages"] = new List<object?>() }));
        Assert.Contains("tpl " + where, e.Message);
        Assert.Contains(what, e.Message);
    }
}
