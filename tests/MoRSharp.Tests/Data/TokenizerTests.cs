using System.Text;
using System.Text.Json;
using MoRSharp.Data;
using MoRSharp.Data.Tokenizers;
using Xunit.Abstractions;

namespace MoRSharp.Tests.Data;

public class TokenizerTests(ITestOutputHelper output)
{
    private static List<(string Text, int[] Ids)> Golden() =>
        File.ReadLines(SharedData.Path("golden/gpt2_token_ids.jsonl"))
            .Where(l => l.Trim().Length > 0)
            .Select(l =>
            {
                using var d = JsonDocument.Parse(l);
                return (d.RootElement.GetProperty("text").GetString()!,
                        d.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray());
            })
            .ToList();

    [Fact]
    public void Gpt2MatchesGoldenIdsAndRoundTrips()
    {
        var tok = TokenizerFactory.Gpt2();
        var golden = Golden();
        Assert.True(golden.Count >= 30);
        foreach (var (text, ids) in golden)
        {
            Assert.Equal(ids, tok.Encode(text));
            Assert.Equal(text, tok.Decode(ids));
        }
        output.WriteLine($"gpt2: {golden.Count} golden strings encode to their ids and decode back exactly");
        Assert.Equal("gpt2", tok.Name);
        Assert.Equal(50257, tok.VocabSize);
        Assert.Equal(50256, tok.EosId);
        Assert.Null(tok.BosId);
    }

    [Fact]
    public void Gpt2EncodesSpecialTokenTextAsText()
    {
        var tok = TokenizerFactory.Gpt2();
        Assert.Equal([27, 91, 437, 1659, 5239, 91, 29], tok.Encode("<|endoftext|>"));
        var ids = tok.Encode("a <|endoftext|>!");
        Assert.DoesNotContain(50256, ids);
        Assert.Equal("a <|endoftext|>!", tok.Decode(ids));
        Assert.Equal("<|endoftext|>", tok.Decode([50256]));
        Assert.Equal("Hello<|endoftext|>", tok.Decode([15496, 50256]));
        Assert.Equal(" world", tok.DecodeToken(995));
        Assert.Equal("\uFFFD", tok.DecodeToken(222));                 // the first byte of an emoji alone
        Assert.Empty(tok.Encode(""));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([50257]));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.DecodeToken(-1));
    }

    [Fact]
    public void VocabMergesFilesAgreeWithBuiltInGpt2()
    {
        var files = TokenizerFactory.FromVocabMerges(SharedData.Path("tokenizers/gpt2/vocab.json"), SharedData.Path("tokenizers/gpt2/merges.txt"));
        var builtIn = TokenizerFactory.Gpt2();
        Assert.Equal(50257, files.VocabSize);
        Assert.Equal(50000, files.MergeCount);          // the file has no #version line: the first line is a merge
        Assert.Equal(50256, files.EosId);
        Assert.Null(files.BosId);
        var golden = Golden();
        foreach (var (text, ids) in golden)
        {
            Assert.Equal(ids, files.Encode(text));
            Assert.Equal(text, files.Decode(ids));
        }
        // a longer mixed text: both implementations agree token for token
        string brown = string.Join("\n", File.ReadLines(SharedData.Path("brown/brown.txt")).Take(400));
        string mixed = brown + "\n  café 😀 <|endoftext|> 123456 \t x\r\n";
        Assert.Equal(builtIn.Encode(mixed), files.Encode(mixed));
        Assert.Equal(mixed, files.Decode(files.Encode(mixed)));
        output.WriteLine($"vocab.json + merges.txt: {golden.Count} golden strings + {mixed.Length} chars of Brown agree with the built-in GPT-2");
    }

    [Fact]
    public void VocabMergesSkipsVersionLineOnlyIfPresent()
    {
        using var dir = new TempDir();
        string vocab = dir.Write("vocab.json", """{"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4, "<|endoftext|>": 5}""");
        string withHeader = dir.Write("with/merges.txt", "#version: 0.2\na b\nĠ ab\n");
        string without = dir.Write("without/merges.txt", "a b\nĠ ab\n");
        var t1 = TokenizerFactory.FromVocabMerges(vocab, withHeader);
        var t2 = TokenizerFactory.FromVocabMerges(vocab, without);
        Assert.Equal(2, t1.MergeCount);
        Assert.Equal(2, t2.MergeCount);
        Assert.Equal([2, 4], t1.Encode("ab ab"));
        Assert.Equal([2, 4], t2.Encode("ab ab"));
        var bad = dir.Write("bad/merges.txt", "a b\nab\n");
        var e = Assert.Throws<DataException>(() => TokenizerFactory.FromVocabMerges(vocab, bad));
        Assert.Contains("merges.txt:2", e.Message);
    }

    [Fact]
    public void LlamaTokenizerJsonLoadsAndRoundTrips()
    {
        var tok = TokenizerFactory.FromHuggingFaceJson(SharedData.Path("tokenizers/llama/tokenizer.json"));
        Assert.Equal("llama", tok.Name);
        Assert.Equal(32000, tok.VocabSize);
        Assert.Equal(1, tok.BosId);                      // tokenizer_config.json: bos_token <s>
        Assert.Equal(2, tok.EosId);                      // eos_token </s>
        Assert.True(tok.AddBosToken);
        Assert.False(tok.AddEosToken);

        Assert.Equal([15043], tok.Encode("Hello"));      // ▁Hello (the normalizer prepends ▁)
        Assert.Equal([15043, 3186], tok.Encode("Hello world"));
        Assert.Equal("Hello", tok.Decode([15043]));
        Assert.Equal("Hello world", tok.Decode([15043, 3186]));
        Assert.Equal(" world", tok.DecodeToken(3186));   // inside a sequence ▁ is a space

        // byte fallback: the emoji is not in the vocabulary → its 4 UTF-8 bytes <0xF0><0x9F><0x98><0x80> (id = byte + 3)
        var emoji = tok.Encode("😀");
        Assert.Equal([29871, 0xF0 + 3, 0x9F + 3, 0x98 + 3, 0x80 + 3], emoji);
        Assert.Equal("😀", tok.Decode(emoji));

        foreach (var s in new[] { "The quick brown fox jumps over the lazy dog.", "café naïve résumé", "line one\nline two\n\n  indented",
                                  "中文字符 and 日本語", "emoji 😀👍🏽 mix", "tabs\tand\ttabs", "1234567890 3.14159 -42", "  leading", "trailing  " })
        {
            var ids = tok.Encode(s);
            Assert.DoesNotContain(0, ids);               // never <unk>: byte fallback covers everything
            Assert.Equal(s, tok.Decode(ids));
        }

        // special-token text is plain text; special ids decode to their text
        var eosText = tok.Encode("</s>");
        Assert.DoesNotContain(2, eosText);
        Assert.Equal("</s>", tok.Decode(eosText));
        Assert.Equal("<s> Hello", tok.Decode([1, 15043]));
    }

    [Fact]
    public void HuggingFaceByteLevelJsonMatchesGolden()
    {
        // the layout of Hugging Face's gpt2 tokenizer.json, built from the shared vocab.json + merges.txt
        using var dir = new TempDir();
        var vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(SharedData.Path("tokenizers/gpt2/vocab.json")))!;
        var merges = File.ReadLines(SharedData.Path("tokenizers/gpt2/merges.txt")).Where(l => l.Length > 0).ToArray();
        var json = new
        {
            version = "1.0",
            added_tokens = new[] { new { id = 50256, content = "<|endoftext|>", special = true } },
            normalizer = (object?)null,
            pre_tokenizer = new { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = true },
            post_processor = new { type = "ByteLevel", add_prefix_space = true, trim_offsets = false, use_regex = true },
            decoder = new { type = "ByteLevel", add_prefix_space = true, trim_offsets = true, use_regex = true },
            model = new { type = "BPE", dropout = (object?)null, unk_token = (object?)null, continuing_subword_prefix = "", end_of_word_suffix = "",
                          fuse_unk = false, byte_fallback = false, vocab, merges },
        };
        string path = dir.Write("hf-gpt2/tokenizer.json", JsonSerializer.Serialize(json));
        dir.Write("hf-gpt2/tokenizer_config.json", """{"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": false}""");
        var tok = TokenizerFactory.FromHuggingFaceJson(path);
        Assert.Equal(50256, tok.EosId);
        Assert.Equal(50257, tok.VocabSize);
        foreach (var (text, ids) in Golden())
        {
            Assert.Equal(ids, tok.Encode(text));
            Assert.Equal(text, tok.Decode(ids));
        }
    }

    [Fact]
    public void MetaspacePreTokenizerVariantOfLlamaAgrees()
    {
        // newer SentencePiece exports use a Metaspace pre-tokenizer + decoder instead of Prepend/Replace; same tokens (except
        // for text that starts with a space: Metaspace does not prepend ▁ then, as in Hugging Face)
        using var dir = new TempDir();
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(SharedData.Path("tokenizers/llama/tokenizer.json")))!;
        node["normalizer"] = null;
        node["pre_tokenizer"] = System.Text.Json.Nodes.JsonNode.Parse("""{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}""");
        node["decoder"] = System.Text.Json.Nodes.JsonNode.Parse(
            """{"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}]}""");
        string path = dir.Write("llama-ms/tokenizer.json", node.ToJsonString());
        var variant = TokenizerFactory.FromHuggingFaceJson(path);
        var original = TokenizerFactory.FromHuggingFaceJson(SharedData.Path("tokenizers/llama/tokenizer.json"));
        foreach (var s in new[] { "Hello world", "two  inner  spaces", "emoji 😀 and café", "line\nbreak", "1234567890 -42" })
        {
            Assert.Equal(original.Encode(s), variant.Encode(s));
            Assert.Equal(s, variant.Decode(variant.Encode(s)));
        }
    }

    [Fact]
    public void ByteTokenizer()
    {
        var tok = TokenizerFactory.Bytes();
        Assert.Equal(257, tok.VocabSize);
        Assert.Equal(256, tok.EosId);
        Assert.Null(tok.BosId);
        Assert.Equal([104, 105], tok.Encode("hi"));
        string s = "café 😀\n";
        var ids = tok.Encode(s);
        Assert.Equal(Encoding.UTF8.GetByteCount(s), ids.Length);
        Assert.Equal(s, tok.Decode(ids));
        Assert.Equal("a<|endoftext|>b", tok.Decode([97, 256, 98]));
        Assert.Equal("a", tok.DecodeToken(97));
        Assert.Equal("\uFFFD", tok.DecodeToken(0xC3));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([257]));
    }

    [Fact]
    public void SaveToAndLoadRebuildTheSameTokenizer()
    {
        using var dir = new TempDir();
        string sample = "Hello world, café 😀 <|endoftext|>\n  x";
        var tokenizers = new ITokenizer[]
        {
            TokenizerFactory.Gpt2(),
            TokenizerFactory.Bytes(),
            TokenizerFactory.FromHuggingFaceJson(SharedData.Path("tokenizers/llama/tokenizer.json")),
            TokenizerFactory.FromVocabMerges(SharedData.Path("tokenizers/gpt2/vocab.json"), SharedData.Path("tokenizers/gpt2/merges.txt")),
        };
        for (int i = 0; i < tokenizers.Length; i++)
        {
            var t = tokenizers[i];
            string d = dir.File($"t{i}");
            t.SaveTo(d);
            Assert.True(File.Exists(Path.Combine(d, TokenizerFactory.InfoFileName)));
            var back = TokenizerFactory.Load(d);
            Assert.Equal(t.Name, back.Name);
            Assert.Equal(t.VocabSize, back.VocabSize);
            Assert.Equal(t.EosId, back.EosId);
            Assert.Equal(t.BosId, back.BosId);
            Assert.Equal(t.Encode(sample), back.Encode(sample));
        }
        Assert.True(File.Exists(dir.File("t2/tokenizer.json")));
        Assert.True(File.Exists(dir.File("t2/tokenizer_config.json")));
        Assert.True(File.Exists(dir.File("t3/merges.txt")));
    }

    [Fact]
    public void LoadByNameAndPath()
    {
        Assert.Same(TokenizerFactory.Gpt2(), TokenizerFactory.Load("gpt2"));
        Assert.Equal("bytes", TokenizerFactory.Load("bytes").Name);
        Assert.Equal(32000, TokenizerFactory.Load(SharedData.Path("tokenizers/llama")).VocabSize);
        Assert.Equal(32000, TokenizerFactory.Load(SharedData.Path("tokenizers/llama/tokenizer.json")).VocabSize);
        Assert.Equal(50257, TokenizerFactory.Load(SharedData.Path("tokenizers/gpt2")).VocabSize);
        var e = Assert.Throws<FileNotFoundException>(() => TokenizerFactory.Load("/nonexistent/tokenizer-dir"));
        Assert.Contains("/nonexistent/tokenizer-dir", e.Message);
        using var dir = new TempDir();
        Assert.Throws<FileNotFoundException>(() => TokenizerFactory.Load(dir.Path));
        dir.Write(TokenizerFactory.InfoFileName, """{"kind": "sentencepiece"}""");
        var bad = Assert.Throws<DataException>(() => TokenizerFactory.Load(dir.Path));
        Assert.Contains("sentencepiece", bad.Message);
    }

    [Fact]
    public void UnsupportedTokenizerJsonIsAClearError()
    {
        using var dir = new TempDir();
        string unigram = dir.Write("u/tokenizer.json", """{"model": {"type": "Unigram", "vocab": []}}""");
        var e = Assert.Throws<DataException>(() => TokenizerFactory.FromHuggingFaceJson(unigram));
        Assert.Contains("Unigram", e.Message);
        Assert.Contains(unigram, e.Message);
        string broken = dir.Write("b/tokenizer.json", "{ not json");
        Assert.Contains(broken, Assert.Throws<DataException>(() => TokenizerFactory.FromHuggingFaceJson(broken)).Message);
    }

    [Fact]
    public void ByteLevelTokenizerJsonWithDigitsAndAddedTokens()
    {
        // a SmolLM-style file: Digits + ByteLevel pre-tokenizer, merges as pairs, a non-special added token
        using var dir = new TempDir();
        var vocab = new Dictionary<string, int>();
        foreach (char c in "abcdefghijklmnopqrstuvwxyz0123456789Ġ<|>") vocab[c.ToString()] = vocab.Count;
        vocab["ab"] = vocab.Count;
        vocab["Ġab"] = vocab.Count;
        vocab["12"] = vocab.Count;
        int eos = vocab.Count;
        var json = new
        {
            added_tokens = new object[]
            {
                new { id = eos, content = "<|endoftext|>", special = true },
                new { id = eos + 1, content = "<tool>", special = false },
            },
            normalizer = (object?)null,
            pre_tokenizer = new
            {
                type = "Sequence",
                pretokenizers = new object[]
                {
                    new { type = "Digits", individual_digits = true },
                    new { type = "ByteLevel", add_prefix_space = false, use_regex = true },
                },
            },
            decoder = new { type = "ByteLevel" },
            model = new { type = "BPE", vocab, merges = new[] { new[] { "a", "b" }, new[] { "Ġ", "ab" }, new[] { "1", "2" } } },
        };
        string path = dir.Write("smol/tokenizer.json", JsonSerializer.Serialize(json));
        var tok = TokenizerFactory.FromHuggingFaceJson(path);
        Assert.Equal(eos, tok.EosId);                    // no tokenizer_config.json: the well-known <|endoftext|>
        Assert.Equal(eos + 2, tok.VocabSize);
        // digits are split one by one before BPE, so "12" never merges
        Assert.Equal([vocab["ab"], vocab["Ġab"], vocab["Ġ"], vocab["1"], vocab["2"]], tok.Encode("ab ab 12"));
        Assert.Equal([vocab["a"], eos + 1, vocab["b"]], tok.Encode("a<tool>b"));
        Assert.DoesNotContain(eos, tok.Encode("<|endoftext|>"));
        Assert.Equal("ab ab 12", tok.Decode(tok.Encode("ab ab 12")));
    }
}
