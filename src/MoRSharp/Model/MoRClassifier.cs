using MoRSharp.Config;
using MoRSharp.IO;
using MoRSharp.Modalities;
using MoRSharp.Routing;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoRSharp.Model;

/// <summary>Class logits and what routing did in one forward pass.</summary>
public sealed record ClassifierOutput(Tensor Logits, RoutingStats Routing)   // Logits [B, C]
{
    /// <summary>What training minimises: cross-entropy plus the config-weighted routing losses (expert-choice BCE, z-loss).</summary>
    public Tensor TrainingLoss(Tensor labels)
    {
        var ce = nn.functional.cross_entropy(Logits.to_type(ScalarType.Float32), labels);
        return Routing.WeightedLoss is { } extra ? ce + extra.to_type(ce.dtype) : ce;
    }
}

/// <summary>
/// An image or audio classifier on an MoR encoder: <c>model.*</c> (<see cref="MoREncoder"/>) → pooling (mean over the tokens,
/// or the class token) → <c>classifier.weight</c> [C, d] and <c>classifier.bias</c> [C] (HF <c>ViTForImageClassification</c> names).
/// A model folder holds <c>config.json</c> (the stack; <c>vocab_size</c> = number of classes), <see cref="EncoderConfig.FileName"/>
/// (front end, labels, pooling) and <c>model.safetensors</c>.
/// </summary>
public sealed class MoRForClassification : nn.Module
{
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";

    private readonly MoREncoder model;
    private readonly Linear classifier;

    public ModelConfig Config { get; }
    public EncoderConfig Encoder { get; }

    public MoRForClassification(ModelConfig config, EncoderConfig encoder, long seed = 0) : base(Init(config, encoder))
    {
        Config = config;
        Encoder = encoder;
        model = new MoREncoder(config, encoder);
        classifier = nn.Linear(config.HiddenSize, encoder.NumLabels, hasBias: true);
        RegisterComponents();
        InitWeights(seed);
    }

    public MoREncoder Model => model;
    public RecursionLayout Layout => model.Layout;

    private static string Init(ModelConfig config, EncoderConfig encoder)
    {
        ConfigValidator.Validate(config);
        encoder.Validate();
        if (config.VocabSize != encoder.NumLabels)
            throw new ConfigException($"vocab_size: a classifier's vocab_size is its number of classes ({encoder.NumLabels} labels in {EncoderConfig.FileName}), got {config.VocabSize}");
        if (config.MaxPositionEmbeddings < encoder.Tokens)
            throw new ConfigException($"max_position_embeddings: {config.MaxPositionEmbeddings} is less than the {encoder.Tokens} tokens per example");
        Native.TorchRuntime.Initialize();
        return nameof(MoRForClassification);
    }

    /// <summary>The core's init (N(0, initializer_range) for every weight, norms = 1), biases = 0; seeded, independent of the global RNG.</summary>
    private void InitWeights(long seed)
    {
        using var gen = new Generator((ulong)seed);
        using var _ = torch.no_grad();
        foreach (var (name, p) in named_parameters())
        {
            if (name.EndsWith("layernorm.weight") || name == "model.norm.weight") p.fill_(1.0);
            else if (name.EndsWith(".bias")) p.zero_();
            else p.normal_(0, Config.InitializerRange, gen);
        }
    }

    /// <summary>pixels [B, C, H, W] or log-mel frames [B, T, M] → logits [B, C] (routing: expert-choice top-k per example).</summary>
    public ClassifierOutput Forward(Tensor input)
    {
        var (h, stats) = model.Forward(input);                                        // [B, N, d]
        var pooled = Encoder.Pooling == "cls" ? h[.., 0, ..] : h.mean([1L]);           // [B, d]
        return new ClassifierOutput(classifier.forward(pooled), stats);
    }

    /// <summary>Recursion depth of each patch/frame [B, P] (the class token dropped), or null without routing.</summary>
    public Tensor? TokenDepth(RoutingStats stats) =>
        stats.Depth is null ? null : Encoder.ClassToken ? stats.Depth[.., 1..] : stats.Depth;

    /// <summary>Writes config.json, encoder.json and model.safetensors into <paramref name="dir"/>.</summary>
    public void Save(string dir)
    {
        Directory.CreateDirectory(dir);
        ModelWeights.Save(this, Path.Combine(dir, WeightsFile));
        ConfigJson.Save(Config, Path.Combine(dir, ConfigFile));
        Encoder.Save(Path.Combine(dir, EncoderConfig.FileName));
    }

    /// <summary>Loads a folder written by <see cref="Save"/> (a trained classifier or one of its checkpoints).</summary>
    public static MoRForClassification Load(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"model folder {dir} does not exist");
        foreach (var f in new[] { ConfigFile, EncoderConfig.FileName, WeightsFile })
            if (!File.Exists(Path.Combine(dir, f)))
                throw new FileNotFoundException($"{dir}: missing {f} (a classifier folder holds {ConfigFile}, {EncoderConfig.FileName} and {WeightsFile}; is it the --out of mor train --task …?)");
        var config = ConfigJson.Load(Path.Combine(dir, ConfigFile));
        var encoder = EncoderConfig.Load(Path.Combine(dir, EncoderConfig.FileName));
        var m = new MoRForClassification(config, encoder);
        try { ModelWeights.Load(m, Path.Combine(dir, WeightsFile)); }
        catch { m.Dispose(); throw; }
        return m;
    }
}
