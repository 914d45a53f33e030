using System.Text.Json;
using System.Text.Json.Nodes;
using MoRSharp.Config;
using MoRSharp.IO;
using MoRSharp.Model;
using MoRSharp.Tests.Data;
using MoRSharp.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MoRSharp.Tests.IO;

/// <summary>
/// Hugging Face Llama folders in and out, checked against the golden tiny Llama (HF layout, logits from an independent
/// numpy forward pass). Python transformers/torch are not installed here and the package registries reachable from this
/// machine do not carry transformers, so the export is verified by round trip against the golden folder instead.
/// </summary>
public class HfModelFolderTests(ITestOutputHelper output)
{
    private static string Golden => SharedData.Path("golden/tiny-llama");

    private static (long[] ids, Tensor logits) GoldenData()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Golden, "golden.json")));
        var ids = doc.RootElement.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        var bytes = File.ReadAllBytes(Path.Combine(Golden, "logits.f32"));
        var f = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, f, 0, bytes.Length);
        return (ids, torch.tensor(f).view(ids.Length, -1));
    }

    private static Tensor Logits(MoRForCausalLM model, long[] ids)
    {
        model.eval();
        using var _ = no_grad();
        return model.Forward(torch.tensor(ids).unsqueeze(0)).Logits.squeeze(0);
    }

    private static double MaxDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    private static void CopyGoldenTensors(string dir, Func<string, string>? rename = null, ScalarType? dtype = null, long shard = SafeTensorsCheckpoint.DefaultMaxShardBytes,
        IEnumerable<(string, Tensor)>? extra = null)
    {
        using var ck = SafeTensorsCheckpoint.Open(Golden);
        var list = ck.Tensors.Keys.Select(k => (rename?.Invoke(k) ?? k, ck.Read(k))).Concat(extra ?? []).ToList();
        SafeTensorsCheckpoint.Write(dir, list, dtype, shard);
        foreach (var (_, t) in list) t.Dispose();
    }

    [Fact]
    public void Golden_folder_loads_exports_and_reloads_identically()
    {
        using var scope = NewDisposeScope();
        var (ids, want) = GoldenData();
        using var model = HfModelFolder.LoadModel(Golden);
        var first = Logits(model, ids);
        output.WriteLine($"golden folder: max |logits − reference| = {MaxDiff(first, want):E2}");
        Assert.True(MaxDiff(first, want) < 1e-4);

        using var dir = new TempDir();
        HfModelFolder.Write(dir.Path, model);
        // the same tensor names and the same config fields (and values) as the golden Hugging Face folder
        using (var a = SafeTensorsCheckpoint.Open(Golden))
        using (var b = SafeTensorsCheckpoint.Open(dir.Path))
        {
            Assert.Equal(a.Tensors.Keys.Order(), b.Tensors.Keys.Order());
            Assert.All(a.Tensors.Values, t => Assert.Equal(t.Shape, b.Tensors[t.Name].Shape));
            Assert.All(b.Tensors.Values, t => Assert.Equal("F32", t.DType));
        }
        var golden = JsonNode.Parse(File.ReadAllText(Path.Combine(Golden, "config.json")))!.AsObject();
        var ours = JsonNode.Parse(File.ReadAllText(dir.File("config.json")))!.AsObject();
        Assert.Equal(golden.Select(kv => kv.Key).Order(), ours.Select(kv => kv.Key).Order());
        foreach (var (key, value) in golden)
            Assert.True(JsonValueEquals(value, ours[key]), $"config.json {key}: golden {value?.ToJsonString()}, ours {ours[key]?.ToJsonString()}");

        using var again = HfModelFolder.LoadModel(dir.Path);
        Assert.Equal(0.0, MaxDiff(Logits(again, ids), first));
    }

    private static bool JsonValueEquals(JsonNode? a, JsonNode? b) => (a, b) switch
    {
        (null, null) => true,
        (JsonValue x, JsonValue y) when x.TryGetValue(out double dx) && y.TryGetValue(out double dy) => dx == dy,
        _ => a?.ToJsonString() == b?.ToJsonString(),
    };

    /// <summary>A SmolLM2-style config.json (the real field set), BF16 weights in shards with the HF index, an old-style
    /// <c>rotary_emb.inv_freq</c> buffer: loads as the golden model (weights rounded to BF16).</summary>
    [Fact]
    public void SmolLM_style_folder_with_bf16_shards_loads()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDir();
        File.WriteAllText(dir.File("config.json"), """
        {
          "_name_or_path": "HuggingFaceTB/SmolLM2-135M", "architectures": ["LlamaForCausalLM"], "attention_bias": false,
          "attention_dropout": 0.0, "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 64,
          "initializer_range": 0.041666666666666664, "intermediate_size": 160, "is_llama_config": true,
          "max_position_embeddings": 256, "model_type": "llama", "num_attention_heads": 4, "num_hidden_layers": 2,
          "num_key_value_heads": 2, "pad_token_id": null, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_interleaved": false,
          "rope_scaling": null, "rope_theta": 10000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
          "transformers_version": "4.42.3", "use_cache": true, "vocab_size": 512
        }
        """);
        CopyGoldenTensors(dir.Path, dtype: ScalarType.BFloat16, shard: 100_000, extra: [("model.layers.0.self_attn.rotary_emb.inv_freq", torch.ones(8))]);
        Assert.True(File.Exists(dir.File(SafeTensorsCheckpoint.IndexFile)));
        using var model = HfModelFolder.LoadModel(dir.Path);
        using var golden = HfModelFolder.LoadModel(Golden);
        foreach (var (name, p) in golden.state_dict())
            Assert.True(model.state_dict()[name].eq(p.to_type(ScalarType.BFloat16).to_type(ScalarType.Float32)).all().item<bool>(), name);
        var (ids, want) = GoldenData();
        double diff = MaxDiff(Logits(model, ids), want);
        output.WriteLine($"BF16 shards: max |logits − reference| = {diff:E2} (weights rounded to bfloat16)");
        Assert.True(diff < 0.5 && diff > 1e-5, $"{diff}");
    }

    /// <summary>Untied embeddings decided from the weights when config.json has no tie_word_embeddings (HF default false);
    /// keys without the "model." prefix (a saved LlamaModel) also load.</summary>
    [Fact]
    public void Untied_and_unprefixed_variants_load()
    {
        using var scope = NewDisposeScope();
        var (ids, want) = GoldenData();
        using var dir = new TempDir();
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(Golden, "config.json")))!.AsObject();
        config.Remove("tie_word_embeddings");
        File.WriteAllText(dir.File("config.json"), config.ToJsonString());
        using (var ck = SafeTensorsCheckpoint.Open(Golden))
        using (var embed = ck.Read("model.embed_tokens.weight"))
            CopyGoldenTensors(dir.Path, extra: [("lm_head.weight", embed * 2)]);
        using (var untied = HfModelFolder.LoadModel(dir.Path))
        {
            Assert.False(untied.Config.TieWordEmbeddings);
            Assert.True(MaxDiff(Logits(untied, ids), want * 2) < 2e-4);     // lm_head = 2·E doubles every logit
        }

        using var dir2 = new TempDir();
        File.Copy(Path.Combine(Golden, "config.json"), dir2.File("config.json"));
        CopyGoldenTensors(dir2.Path, rename: k => k.StartsWith("model.") ? k["model.".Length..] : k);
        using var unprefixed = HfModelFolder.LoadModel(dir2.Path);
        Assert.True(MaxDiff(Logits(unprefixed, ids), want) < 1e-4);
    }

    [Fact]
    public void Unsupported_fields_and_mismatching_weights_are_named()
    {
        using var dir = new TempDir();
        var baseConfig = File.ReadAllText(Path.Combine(Golden, "config.json"));
        CopyGoldenTensors(dir.Path);

        string Error(Action<JsonObject> change)
        {
            var c = JsonNode.Parse(baseConfig)!.AsObject();
            change(c);
            File.WriteAllText(dir.File("config.json"), c.ToJsonString());
            var e = Assert.ThrowsAny<Exception>(() => HfModelFolder.LoadModel(dir.Path).Dispose());
            Assert.True(e is ConfigException or SafeTensorsException, e.GetType().Name);
            output.WriteLine(e.Message);
            return e.Message;
        }
        Assert.Contains("rope_scaling: must be null: llama3 RoPE scaling changes the rotary frequencies",
            Error(c => c["rope_scaling"] = JsonNode.Parse("""{"factor": 32.0, "rope_type": "llama3", "original_max_position_embeddings": 8192}""")));
        Assert.Contains("quantization_config: quantized checkpoints", Error(c => c["quantization_config"] = new JsonObject { ["quant_method"] = "gptq" }));
        Assert.Contains("model_type: must be \"llama\"", Error(c => c["model_type"] = "mistral"));
        Assert.Contains("attention_bias: must be false", Error(c => c["attention_bias"] = true));
        Assert.Contains("hidden_act: must be \"silu\"", Error(c => c["hidden_act"] = "gelu"));
        Assert.Contains("unknown key 'sliding_window'", Error(c => c["sliding_window"] = 4096));
        Assert.Contains("hidden_size: missing", Error(c => c.Remove("hidden_size")));
        Assert.Contains("missing tensor 'model.layers.2.", Error(c => c["num_hidden_layers"] = 3));
        Assert.Contains("tensor 'model.embed_tokens.weight' has shape [512, 64], the model expects [600, 64]", Error(c => c["vocab_size"] = 600));
        Assert.Contains("unexpected tensor(s) not in the model: model.layers.1.", Error(c => c["num_hidden_layers"] = 1));
        Assert.Contains("tensor 'model.layers.0.self_attn.k_proj.weight' has shape [32, 64], the model expects [64, 64]", Error(c => c["num_key_value_heads"] = 4));

        // a tied config with an lm_head that is not the embedding
        var c2 = JsonNode.Parse(baseConfig)!.AsObject();
        File.WriteAllText(dir.File("config.json"), c2.ToJsonString());
        CopyGoldenTensors(dir.Path, extra: [("lm_head.weight", torch.zeros(512, 64))]);
        var e2 = Assert.Throws<SafeTensorsException>(() => HfModelFolder.LoadModel(dir.Path).Dispose());
        Assert.Contains("tie_word_embeddings is true but lm_head.weight differs", e2.Message);

        // no weights at all
        foreach (var f in Directory.GetFiles(dir.Path, "*.safetensors")) File.Delete(f);
        File.WriteAllText(dir.File("pytorch_model.bin"), "x");
        Assert.Contains("pytorch_model.bin pickles are not read", Assert.Throws<FileNotFoundException>(() => HfModelFolder.LoadModel(dir.Path)).Message);
    }

    [Fact]
    public void Llama3_eos_lists_and_generation_config_are_read()
    {
        using var dir = new TempDir();
        var c = JsonNode.Parse(File.ReadAllText(Path.Combine(Golden, "config.json")))!.AsObject();
        c["bos_token_id"] = 1;
        c["eos_token_id"] = new JsonArray(2, 7, 9);
        File.WriteAllText(dir.File("config.json"), c.ToJsonString());
        CopyGoldenTensors(dir.Path);
        var config = HfModelFolder.ReadConfig(dir.Path);
        Assert.Equal(2, config.EosTokenId);
        Assert.Equal(new[] { 2, 7, 9 }, config.EosTokenIds);
        var written = JsonNode.Parse(HfModelFolder.ConfigText(config))!;
        Assert.Equal("[2,7,9]", written["eos_token_id"]!.ToJsonString());

        var fromConfig = GenerationDefaults.FromModelFolder(dir.Path);      // no generation_config.json: ids from config.json
        Assert.Equal(new[] { 2, 7, 9 }, fromConfig.EosTokenIds);
        Assert.Equal(1, fromConfig.BosTokenId);
        Assert.Null(fromConfig.Temperature);

        File.WriteAllText(dir.File("generation_config.json"), """
            {"bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128008, 128009], "temperature": 0.6, "top_p": 0.9,
             "top_k": 50, "max_new_tokens": 256, "transformers_version": "4.45.0.dev0"}
            """);
        var g = GenerationDefaults.FromModelFolder(dir.Path);
        Assert.Equal(new[] { 128001, 128008, 128009 }, g.EosTokenIds);
        Assert.Equal(128000, g.BosTokenId);
        Assert.True(g.DoSample);
        Assert.Equal(0.6, g.Temperature);
        Assert.Equal(0.9, g.TopP);
        Assert.Equal(50, g.TopK);
        Assert.Equal(256, g.MaxNewTokens);
        Assert.Contains("temperature: expected a number", Assert.Throws<ConfigException>(() => GenerationDefaults.Parse("""{"temperature": "hot"}""", "g.json")).Message);
    }

    [Fact]
    public void Recursive_model_unrolls_into_an_identical_llama()
    {
        using var scope = NewDisposeScope();
        var config = TestConfigs.Tiny(routing: "none", sharing: "middle_cycle", numRecursion: 3, blockSize: 2);   // 1 + 2·3 + 1
        using var recursive = new MoRForCausalLM(config, seed: 5);
        using var dir = new TempDir();
        HfModelFolder.WriteUnrolled(dir.Path, recursive);
        var written = JsonNode.Parse(File.ReadAllText(dir.File("config.json")))!;
        Assert.Equal("[\"LlamaForCausalLM\"]", written["architectures"]!.ToJsonString());
        Assert.Null(written["mor"]);
        using var llama = HfModelFolder.LoadModel(dir.Path);
        Assert.Null(llama.Config.MoR);
        Assert.Equal(8, llama.Layout.NumUnique);
        var ids = ModelTestUtil.RandomIds(1, 20, config.VocabSize, 1).squeeze(0).data<long>().ToArray();
        Assert.Equal(0.0, MaxDiff(Logits(llama, ids), Logits(recursive, ids)));

        var routed = TestConfigs.Tiny(routing: "expert", sharing: "middle_cycle");
        using var mor = new MoRForCausalLM(routed);
        Assert.Throws<ConfigException>(() => HfModelFolder.WriteUnrolled(dir.Path, mor));
    }

    [Fact]
    public void Mor_models_are_written_with_their_mor_block_and_reload()
    {
        using var scope = NewDisposeScope();
        var config = TestConfigs.Tiny(routing: "expert", sharing: "middle_cycle");
        using var model = new MoRForCausalLM(config, seed: 2);
        using var dir = new TempDir();
        HfModelFolder.Write(dir.Path, model, ScalarType.BFloat16);
        var json = JsonNode.Parse(File.ReadAllText(dir.File("config.json")))!;
        Assert.Equal("[\"MoRForCausalLM\"]", json["architectures"]!.ToJsonString());
        Assert.Equal("bfloat16", json["torch_dtype"]!.GetValue<string>());
        Assert.Equal("expert", json["mor"]!["routing"]!.GetValue<string>());
        using var back = HfModelFolder.LoadModel(dir.Path);
        Assert.Equal(model.state_dict().Keys.Order(), back.state_dict().Keys.Order());
        foreach (var (name, p) in model.state_dict())
            Assert.True(back.state_dict()[name].eq(p.to_type(ScalarType.BFloat16).to_type(ScalarType.Float32)).all().item<bool>(), name);
    }

    [Fact]
    public void Model_folder_loading_needs_a_tokenizer_and_names_what_is_missing()
    {
        var e = Assert.Throws<FileNotFoundException>(() => Checkpoint.LoadModelFolder(Golden));
        Assert.Contains("no tokenizer files", e.Message);
        using var dir = new TempDir();
        Assert.Contains("missing config.json", Assert.Throws<FileNotFoundException>(() => Checkpoint.LoadModelFolder(dir.Path)).Message);
    }
}
