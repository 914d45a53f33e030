using MoRSharp.Config;
using MoRSharp.Model;

namespace MoRSharp.Modalities;

/// <summary>
/// Parameters and forward FLOPs per example of an image/audio classifier, built on the core <see cref="ModelAccounting"/>
/// of its stack at a context of N tokens with bidirectional attention.
/// <para>FLOPs per example (multiply–add = 2) = front end (patch convolution 2·C·p²·d per patch, or frame projection 2·M·d per
/// frame) + stack (the core's exact per-token count without the LM head, × N) + classifier (2·d·C, once). Not counted, as in the
/// core: norms, RoPE, softmax, pooling, gather/scatter — and the log-mel extraction (FFT and filterbank, the same for every
/// model; about 1 MFLOP per 64-frame clip).</para>
/// <para>Unique parameters = front end (+ class token, + learned positions) + the stack's non-embedding parameters (unique layers, final norm,
/// routers) + classifier weight and bias; each shared layer counted once.</para>
/// </summary>
public sealed record EncoderAccounting(ModelAccounting Stack, int Tokens, double FrontEndFlops, double HeadFlops, long FrontEndParams, long HeadParams)
{
    public double StackFlops => (Stack.FlopsPerTokenExact - Stack.LmHeadFlopsPerToken) * Tokens;
    public double FlopsPerExample => FrontEndFlops + StackFlops + HeadFlops;
    public double TrainingFlopsPerExample => 3 * FlopsPerExample;
    public long UniqueParams => FrontEndParams + Stack.NonEmbeddingParams + HeadParams;

    public static EncoderAccounting Compute(ModelConfig config, EncoderConfig encoder)
    {
        encoder.Validate();
        int n = encoder.Tokens;
        var stack = ModelAccounting.Compute(config, n, causal: false);
        long d = config.HiddenSize, c = encoder.NumLabels;
        double frontFlops;
        long frontParams;
        if (encoder.TaskKind == ClassificationTask.ImageClassification)
        {
            var i = encoder.Image!;
            long patchIn = (long)i.NumChannels * i.PatchSize * i.PatchSize;
            frontFlops = 2.0 * patchIn * d * i.NumPatches;
            frontParams = patchIn * d + d;
        }
        else
        {
            var a = encoder.Audio!;
            frontFlops = 2.0 * a.NumMelBins * d * a.MaxFrames;
            frontParams = (long)a.NumMelBins * d + d;
        }
        if (encoder.ClassToken) frontParams += d;
        if (encoder.LearnedPositions) frontParams += n * d;
        return new EncoderAccounting(stack, n, frontFlops, 2.0 * d * c, frontParams, d * c + c);
    }
}
