using System.Text.Json.Serialization;

namespace MoRSharp.Config;

/// <summary>
/// A Llama-style model configuration in the Hugging Face <c>config.json</c> form, plus the optional
/// <c>"mor"</c> block. <see cref="NumHiddenLayers"/> is the <b>unrolled</b> depth (every recursion counted),
/// as in the paper's tables (e.g. 360M Middle-Cycle N_r=3 = 1 + 10·3 + 1 = 32).
/// Defaults are the CPU-sized "micro" shape; presets (<see cref="Presets"/>) give the paper's shapes.
/// </summary>
public sealed class ModelConfig
{
    [JsonPropertyName("model_type")] public string ModelType { get; set; } = "llama";
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; set; } = 256;               // d
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; set; } = 768;   // SwiGLU inner width
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; set; } = 8;      // unrolled depth L
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; set; } = 4;
    [JsonPropertyName("num_key_value_heads")] public int NumKeyValueHeads { get; set; } = 4;   // GQA when < heads
    [JsonPropertyName("vocab_size")] public int VocabSize { get; set; } = 49152;
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; set; } = 2048;
    [JsonPropertyName("rms_norm_eps")] public double RmsNormEps { get; set; } = 1e-5;
    [JsonPropertyName("rope_theta")] public double RopeTheta { get; set; } = 10000.0;
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; set; } = true;
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; set; } = 0.02;
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; set; } = "silu";
    [JsonPropertyName("bos_token_id")] public int? BosTokenId { get; set; }
    [JsonPropertyName("eos_token_id")] public int? EosTokenId { get; set; }
    /// <summary>Every end-of-sequence id when config.json gives a list (Llama 3: <c>[128001, 128008, 128009]</c>);
    /// <see cref="EosTokenId"/> is then the first. Null when config.json has a single id.</summary>
    [JsonIgnore] public int[]? EosTokenIds { get; set; }

    /// <summary>The Mixture-of-Recursions block; null means a vanilla Llama model.</summary>
    [JsonPropertyName("mor")] public MoRConfig? MoR { get; set; }

    [JsonIgnore] public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>The MoR block, or a vanilla one (no recursion, no routing) when absent.</summary>
    [JsonIgnore] public MoRConfig Recursion => MoR ?? MoRConfig.Vanilla;

    public ModelConfig Clone() => ConfigJson.Clone(this);
}
