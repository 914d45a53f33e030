using System.Text.Json.Serialization;

namespace MoRSharp.Config;

/// <summary>Which unique layer each unrolled position uses (spec §1.2).</summary>
public enum SharingStrategy { None, Cycle, Sequence, MiddleCycle, MiddleSequence }

/// <summary>How tokens are assigned recursion depths (spec §2).</summary>
public enum RoutingKind { None, Expert, Token }

public enum RouterArch { Linear, Mlp }

public enum RouterFunc { Sigmoid, Tanh, Softmax }

/// <summary>Expert-choice causality fix: BCE on the router's own logits (chosen), a separate detached router, or none.</summary>
public enum AuxLossKind { Bce, AuxRouter, None }

public enum BalancingKind { Loss, LossFree }

public enum KvCacheKind { RecursionWise, Shared }

/// <summary>
/// How a routed recursion's output is combined (expert-choice): <c>weighted</c> = H + g·f(H) (paper eq. 2.1, official default);
/// <c>additive</c> = H + f(H) (official <c>gating: additive</c>; no gate, so the router learns only from its auxiliary loss).
/// f is the whole shared block including its own residual adds (spec §10.1).
/// </summary>
public enum GatingKind { Weighted, Additive }

/// <summary>
/// The <c>"mor"</c> block of config.json. Null-valued fields take the defaults of the paper's released configs,
/// which differ between expert- and token-choice (spec §2, §9.2); read the <c>Effective*</c> properties.
/// </summary>
public sealed class MoRConfig
{
    [JsonPropertyName("num_recursion")] public int NumRecursion { get; set; } = 3;
    [JsonPropertyName("sharing")] public string Sharing { get; set; } = "middle_cycle";
    [JsonPropertyName("routing")] public string Routing { get; set; } = "expert";
    [JsonPropertyName("router_arch")] public string RouterArch { get; set; } = "linear";
    /// <summary>sigmoid (expert default) | tanh | softmax (token default).</summary>
    [JsonPropertyName("router_func")] public string? RouterFunc { get; set; }
    /// <summary>Gate scale α: 0.1 for expert-choice, 1.0 for token-choice by default.</summary>
    [JsonPropertyName("alpha")] public double? Alpha { get; set; }
    /// <summary>Capacity c_r per recursion, non-increasing in (0, 1]; default (N_r − r + 1)/N_r.</summary>
    [JsonPropertyName("capacity")] public double[]? Capacity { get; set; }
    [JsonPropertyName("aux_loss")] public string AuxLoss { get; set; } = "bce";
    [JsonPropertyName("aux_coeff")] public double AuxCoeff { get; set; } = 0.001;
    /// <summary>Router z-loss weight: 0 (off) for expert-choice, 1e-5 for token-choice by default (released configs).</summary>
    [JsonPropertyName("z_loss_coeff")] public double? ZLossCoeff { get; set; }
    [JsonPropertyName("balancing")] public string Balancing { get; set; } = "loss";
    [JsonPropertyName("balancing_coeff")] public double BalancingCoeff { get; set; } = 0.1;
    [JsonPropertyName("bias_update_rate")] public double BiasUpdateRate { get; set; } = 0.001;
    [JsonPropertyName("kv_cache")] public string KvCache { get; set; } = "recursion_wise";
    [JsonPropertyName("random_router")] public bool RandomRouter { get; set; } = false;
    [JsonPropertyName("gating")] public string Gating { get; set; } = "weighted";
    /// <summary>Router input temperature (official <c>mor.temp</c>).</summary>
    [JsonPropertyName("router_temperature")] public double RouterTemperature { get; set; } = 1.0;

    /// <summary>A model with no recursion: every unrolled layer unique, no routers.</summary>
    public static MoRConfig Vanilla => new() { NumRecursion = 1, Sharing = "none", Routing = "none" };

    [JsonIgnore] public SharingStrategy SharingKind => ConfigNames.Parse<SharingStrategy>(Sharing, "mor.sharing");
    [JsonIgnore] public RoutingKind RoutingKind => ConfigNames.Parse<RoutingKind>(Routing, "mor.routing");
    [JsonIgnore] public RouterArch RouterArchKind => ConfigNames.Parse<RouterArch>(RouterArch, "mor.router_arch");
    [JsonIgnore] public AuxLossKind AuxLossKind => ConfigNames.Parse<AuxLossKind>(AuxLoss, "mor.aux_loss");
    [JsonIgnore] public BalancingKind BalancingKind => ConfigNames.Parse<BalancingKind>(Balancing, "mor.balancing");
    [JsonIgnore] public KvCacheKind KvCacheKind => ConfigNames.Parse<KvCacheKind>(KvCache, "mor.kv_cache");
    [JsonIgnore] public GatingKind GatingKind => ConfigNames.Parse<GatingKind>(Gating, "mor.gating");

    [JsonIgnore]
    public RouterFunc EffectiveRouterFunc => RouterFunc is null
        ? (RoutingKind == RoutingKind.Token ? Config.RouterFunc.Softmax : Config.RouterFunc.Sigmoid)
        : ConfigNames.Parse<RouterFunc>(RouterFunc, "mor.router_func");

    [JsonIgnore] public double EffectiveAlpha => Alpha ?? (RoutingKind == RoutingKind.Token ? 1.0 : 0.1);

    [JsonIgnore] public double EffectiveZLossCoeff => ZLossCoeff ?? (RoutingKind == RoutingKind.Token ? 1e-5 : 0.0);

    /// <summary>c_r for r = 1..N_r (index 0 = first recursion).</summary>
    [JsonIgnore]
    public double[] EffectiveCapacity => Capacity is { Length: > 0 }
        ? Capacity
        : Enumerable.Range(1, NumRecursion).Select(r => (double)(NumRecursion - r + 1) / NumRecursion).ToArray();
}
