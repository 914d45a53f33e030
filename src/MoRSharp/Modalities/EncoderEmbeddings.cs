using MoRSharp.Modalities.Audio;
using MoRSharp.Modalities.Image;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoRSharp.Modalities;

/// <summary>
/// Input → tokens [B, N, d]: the modality's front end (<c>patch_embeddings</c> for images, <c>frame_embeddings</c> for
/// log-mel audio), then the optional learned class token <c>cls_token</c> [1, 1, d] at position 0 (HF ViT names).
/// </summary>
public sealed class EncoderEmbeddings : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> frontEnd;
    private readonly Parameter? classToken;
    private readonly Parameter? positions;

    public EncoderEmbeddings(EncoderConfig config, int hidden) : base(nameof(EncoderEmbeddings))
    {
        // Registered by hand so the key names the front end (patch_embeddings / frame_embeddings), as in HF.
        if (config.TaskKind == ClassificationTask.ImageClassification)
            register_module("patch_embeddings", frontEnd = new PatchEmbedding(config.Image!, hidden));
        else
            register_module("frame_embeddings", frontEnd = new FrameEmbedding(config.Audio!, hidden));
        if (config.ClassToken)
            register_parameter("cls_token", classToken = new Parameter(torch.zeros(1, 1, hidden)));
        if (config.LearnedPositions)
            register_parameter("position_embeddings", positions = new Parameter(torch.zeros(1, config.Tokens, hidden)));
    }

    /// <summary>pixels [B, C, H, W] or log-mel frames [B, T, M] → [B, N, d] (N = patches or frames, + 1 with the class token).</summary>
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var tokens = frontEnd.forward(input);                                     // [B, P, d]
        if (classToken is not null)
            tokens = torch.cat([classToken.to_type(tokens.dtype).expand(tokens.shape[0], 1, tokens.shape[2]), tokens], dim: 1);   // [B, N, d]
        if (positions is not null) tokens = tokens + positions.to_type(tokens.dtype);
        return tokens.MoveToOuterDisposeScope();
    }
}
