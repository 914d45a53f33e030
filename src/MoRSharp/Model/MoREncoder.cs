using MoRSharp.Config;
using MoRSharp.Modalities;
using MoRSharp.Routing;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoRSharp.Model;

/// <summary>
/// A bidirectional MoR encoder under the HF key prefix <c>model.</c>: <c>embeddings</c> (patch or frame tokens, optional
/// class token) → prelude (unique first layer) → N_r recursions of the shared block (plain, expert- or token-choice) → coda
/// (unique last layer) → <c>norm</c>. The layers, routers and routing are the core's (<see cref="DecoderLayer"/>,
/// <see cref="RecursionLayout"/>, <see cref="ExpertChoiceRouting"/>, <see cref="TokenChoiceRouting"/>); the only difference from <see cref="MoRModel"/> is
/// that attention is bidirectional (<see cref="AttentionInputs.Causal"/> = false) and positions come from
/// <see cref="RopeTables"/> (2-D for patches, 1-D for frames).
/// <para><b>Expert-choice top-k at inference.</b> For a decoder, top-k selection over the sequence leaks the future: a token's
/// depth depends on later tokens' scores, so generation needs the causal rule. An encoder sees its whole input at once and
/// attends both ways anyway, so the top-k rule used in training is also the inference rule here — per example (top-k runs
/// along each example's own tokens, never across the batch), with exactly k_r = ⌊c_r·N⌋ tokens at recursion r.</para>
/// <para><b>Token-choice routing</b> (the core's <see cref="TokenChoiceRouting"/>): each example's tokens at recursion r are
/// compacted and padded to the batch's longest set; under bidirectional attention the padding must stay invisible, so the
/// block gets a key mask built from the <see cref="RecursionBlock"/>'s validity mask (a padded query may see itself only, so
/// no softmax row is empty; its output is discarded). Recursive KV sharing works with both routers: later recursions'
/// selected queries attend to every recursion-1 key.</para>
/// </summary>
public sealed class MoREncoder : nn.Module
{
    private readonly EncoderEmbeddings embeddings;
    private readonly ModuleList<DecoderLayer> layers;                   // unique layers
    private readonly RmsNorm norm;
    private readonly ModuleList<nn.Module<Tensor, Tensor>>? routers;     // expert-choice: one per recursion
    private readonly ModuleList<nn.Module<Tensor, Tensor>>? aux_routers;
    private readonly nn.Module<Tensor, Tensor>? router;                  // token-choice: [N_r, d]
    private readonly Tensor? router_bias;                              // token-choice loss-free bias [N_r] (buffer, saved)

    private readonly RecursionLayout layout;
    private readonly RopeTables rope;
    private readonly ExpertChoiceRouting? expert;
    private readonly TokenChoiceRouting? token;
    private readonly bool kvShared;
    private readonly RoutingKind routing;

    public MoREncoder(ModelConfig config, EncoderConfig encoder) : base(nameof(MoREncoder))
    {
        layout = RecursionLayout.From(config);
        var mor = config.Recursion;
        routing = mor.RoutingKind;
        int d = config.HiddenSize;
        embeddings = new EncoderEmbeddings(encoder, d);
        layers = new ModuleList<DecoderLayer>(Enumerable.Range(0, layout.NumUnique)
            .Select(_ => new DecoderLayer(d, config.IntermediateSize, config.NumAttentionHeads, config.NumKeyValueHeads, config.RmsNormEps)).ToArray());
        norm = new RmsNorm(d, config.RmsNormEps);
        if (routing == RoutingKind.Expert)
        {
            routers = new ModuleList<nn.Module<Tensor, Tensor>>(Enumerable.Range(0, layout.NumRecursion)
                .Select(_ => Routers.Create(mor.RouterArchKind, d, 1)).ToArray());
            if (mor.AuxLossKind == AuxLossKind.AuxRouter)
                aux_routers = new ModuleList<nn.Module<Tensor, Tensor>>(Enumerable.Range(0, layout.NumRecursion)
                    .Select(_ => Routers.Create(mor.RouterArchKind, d, 1)).ToArray());
        }
        else if (routing == RoutingKind.Token)
        {
            router = Routers.Create(mor.RouterArchKind, d, layout.NumRecursion);
            router_bias = torch.zeros(layout.NumRecursion);
        }
        RegisterComponents();
        rope = encoder.TaskKind == ClassificationTask.ImageClassification
            ? RopeTables.Grid(config.HeadDim, encoder.Image!.GridSize, encoder.Image.GridSize, config.RopeTheta, encoder.ClassToken)
            : RopeTables.Sequence(config.HeadDim, encoder.Tokens, config.RopeTheta);
        if (routers is not null) expert = new ExpertChoiceRouting(mor, routers, aux_routers);
        if (router is not null) token = new TokenChoiceRouting(mor, router, router_bias!);
        kvShared = mor.KvCacheKind == KvCacheKind.Shared && layout.IsLooped;
    }

    public RecursionLayout Layout => layout;

    /// <summary>Token-choice: the loss-free balancing bias [N_r] (null for other routing).</summary>
    public Tensor? RouterBias => router_bias;

    /// <summary>pixels [B, C, H, W] or log-mel frames [B, T, M] → final hidden states [B, N, d] and routing stats (depth per token).</summary>
    public (Tensor hidden, RoutingStats stats) Forward(Tensor input)
    {
        var h = embeddings.forward(input);                                           // [B, N, d]
        long b = h.shape[0], n = h.shape[1];
        var (cos, sin) = rope.All(b, h.dtype);                                       // [B, 1, N, hd]
        var full = new AttentionInputs { Cos = cos, Sin = sin, Causal = false };

        foreach (int u in layout.Prelude) h = layers[u].Forward(h, full).hidden;

        RoutingStats stats = RoutingStats.None(b * n);
        if (layout.Recursions.Length > 0)
        {
            var sharedKv = kvShared ? new (Tensor k, Tensor v)[layout.BlockSize] : null;   // recursion 1's keys/values per block layer
            Tensor Block(int r, Tensor x, Tensor? pos, Tensor? valid)                           // x [B, k, d], pos/valid [B, k] or null = all
            {
                var (c, s) = pos is null ? (cos, sin) : rope.At(pos, x.dtype);
                // padded slots (token-choice's ragged sets): no real query may see them; a padded query sees itself only
                Tensor? mask = null;
                if (valid is not null && !valid.all().item<bool>())
                {
                    long k = x.shape[1];
                    mask = valid.unsqueeze(1).unsqueeze(1).logical_or(torch.eye(k, dtype: ScalarType.Bool).unsqueeze(0).unsqueeze(0));   // [B, 1, k, k]
                }
                var unique = layout.Recursions[r];
                for (int j = 0; j < unique.Length; j++)
                {
                    var inputs = new AttentionInputs
                    {
                        Cos = c, Sin = s, Causal = false,
                        Mask = sharedKv is not null && r > 0 ? null : mask,
                        SharedKv = sharedKv is not null && r > 0 ? sharedKv[j] : null,   // selected queries see every recursion-1 key
                        CaptureKv = sharedKv is not null && r == 0,
                    };
                    var (y, key, value) = layers[unique[j]].Forward(x, inputs);
                    if (sharedKv is not null && r == 0) sharedKv[j] = (key!, value!);
                    x = y;
                }
                return x;
            }

            if (routing == RoutingKind.Expert) (h, stats) = expert!.Forward(h, Block, RoutingMode.TopK);
            else if (routing == RoutingKind.Token) (h, stats) = token!.Forward(h, Block);
            else
            {
                for (int r = 0; r < layout.NumRecursion; r++) h = Block(r, h, null, null);
                stats = new RoutingStats { TotalTokens = b * n, TokensPerRecursion = Enumerable.Repeat(b * n, layout.NumRecursion).ToArray() };
            }
        }

        foreach (int u in layout.Coda) h = layers[u].Forward(h, full).hidden;
        return (norm.forward(h), stats);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) rope.Dispose();
        base.Dispose(disposing);
    }
}
