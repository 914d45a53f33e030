using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using MoRSharp.Caching;
using MoRSharp.Config;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Kernels;
using MoRSharp.Model;
using MoRSharp.Routing;
using static TorchSharp.torch;

namespace MoRSharp.Inference;

/// <summary>Settings of the <see cref="BatchingEngine"/>.</summary>
public sealed record EngineOptions
{
    /// <summary>Sequences decoded at once (KV-cache rows).</summary>
    public int MaxBatch { get; init; } = 32;
    /// <summary>Requests waiting for a free row at most; beyond it <see cref="QueueFullException"/>.</summary>
    public int MaxQueue { get; init; } = 256;
    /// <summary>Longest sequence (prompt + generated); default the model's max_position_embeddings.</summary>
    public int? ContextLength { get; init; }
    /// <summary>
    /// Exited tokens wait for the last layer, head and sampling until they are at least this fraction of the sequences in
    /// flight (or nothing else is left to run): the head, the costliest call, then runs on a full batch (spec §5.2, App. E).
    /// 0.75 measured best with the decode kernels: MoR-3 at batch 32 was 1.13–1.22× vanilla (135M shape) against 0.94–1.29×
    /// at 0.5, and faster on micro at batch 8 and 32 (`mor bench generate --exit-batch-fraction`, docs/benchmarks.md). With
    /// session 5's faster kernels 0.5, 0.6 and 0.75 were within the run-to-run noise of each other, and in session 6 0, 0.25,
    /// 0.5 and 0.75 (MoR-3 1.20–1.32× vanilla at batch 32 for all of them; docs/benchmarks.md, "Session 6"). A cost model
    /// of this policy (bench/models/depthwise_batch_model.py) shows why: a fuller block call is paid for with a head call on
    /// fewer rows, and every call streams its weights, so all settings land within 2% of each other.
    /// </summary>
    public double ExitBatchFraction { get; init; } = 0.75;
    /// <summary>
    /// Benchmarks: instead of the trained routers' decisions, each token's number of recursions is drawn from this
    /// distribution over depths 1..N_r (seeded by <see cref="ForcedDepthSeed"/>); gates still come from the routers.
    /// </summary>
    public double[]? ForcedDepthDistribution { get; init; }
    public int ForcedDepthSeed { get; init; } = 1234;
}

/// <summary>
/// Continuous depth-wise batching (spec §5.2): many sequences decode at once; each one's current token moves through
/// stages — <i>enter</i> (embedding, unique first layer, first routing decision), <i>recursion r</i> (one pass of the shared
/// block), <i>exit</i> (unique last layer, norm, head, sampling). One step of the engine runs either every token that is in
/// some recursion — whatever its depth and sequence — through a single call of the shared block (attention reads each
/// token's own (recursion, layer) cache slot), or the exited tokens through the exit stage together with the entering ones.
/// A finished sequence frees its row at once and the next queued request takes it. A vanilla model has no recursion stage,
/// so the same loop is continuous sequence-wise batching. Routing follows the causal rule, token by token, with the same
/// router code as the full forward, so a sequence decodes to the same tokens it would alone.
/// All tensor work runs on the engine's own thread.
/// </summary>
public sealed class BatchingEngine : IGenerationService, IDisposable
{
    private enum Phase { Free, Enter, Recursion, Exit }

    private sealed class Sequence
    {
        public required int[] Prompt;
        public required GenerationOptions Options;
        public required Channel<GeneratedToken> Output;
        public required CancellationToken Cancel;
        public RequestState? Request;   // set when the request takes a row
        public long Enqueued;
    }

    private readonly MoRForCausalLM model;
    private readonly MoRModel core;
    private readonly ITokenizer tokenizer;
    private readonly EngineOptions options;
    private readonly KvCache cache;
    private readonly RecursionLayout layout;
    private readonly RoutingKind routing;
    private readonly ConcurrentQueue<Sequence> pending = new();
    private readonly SemaphoreSlim wake = new(0);
    private readonly Thread thread;
    private readonly CancellationTokenSource stop = new();
    private readonly Random forcedRng;
    private readonly long[] allRows;

    // Per row (cache row = batch slot)
    private readonly Sequence?[] seqs;
    private readonly Phase[] phase;
    private readonly int[] recursion, depth, forcedDepth, chosen, nextId;
    private readonly Tensor state;      // [rows, d] the token's hidden state (expert/recursive: H; token-choice: the carried state)
    private readonly Tensor entry;      // [rows, d] token-choice: H¹, the state entering the recursions
    private readonly Tensor gates;      // [rows] expert: gate of the pending recursion; token-choice: gate of the chosen depth

    private long tokensGenerated, promptTokens, completed, pendingCount, promptTokensReused;
    // Per row: the tokens whose keys/values the row holds. A free row keeps its cache, so a request that extends them (the
    // next turn of a conversation: earlier turns + the reply + a new message) only runs its new tokens (prefix reuse).
    private readonly List<int>[] cachedTokens;

    /// <summary>Prompt tokens that did not have to run again because a free row already held them.</summary>
    public long PromptTokensReused => Interlocked.Read(ref promptTokensReused);
    private readonly long[] perDepth;
    private readonly Stopwatch busy = new();
    private Exception? fatal;

    public ITokenizer Tokenizer => tokenizer;
    public int ContextLength { get; }
    public EngineOptions Options => options;
    public KvCache Cache => cache;
    /// <summary>Engine steps run so far: shared-block calls and exit/enter calls.</summary>
    public long RecursionSteps { get; private set; }
    public long ExitSteps { get; private set; }
    /// <summary>Tokens processed by shared-block calls, summed (÷ RecursionSteps = mean batch of the shared block).</summary>
    public long RecursionTokens { get; private set; }

    public BatchingEngine(MoRForCausalLM model, ITokenizer tokenizer, EngineOptions? options = null)
    {
        this.options = options ??= new EngineOptions();
        if (options.MaxBatch < 1) throw new ArgumentException($"max_batch: must be ≥ 1, got {options.MaxBatch}");
        if (options.MaxQueue < 0) throw new ArgumentException($"max_queue: must be ≥ 0, got {options.MaxQueue}");
        if (options.ExitBatchFraction is < 0 or > 1) throw new ArgumentException($"exit_batch_fraction: must be in [0, 1], got {options.ExitBatchFraction}");
        this.model = model;
        this.tokenizer = tokenizer;
        core = model.Model;
        layout = model.Layout;
        routing = layout.Recursions.Length == 0 ? RoutingKind.None : model.Config.Recursion.RoutingKind;
        if (options.ForcedDepthDistribution is { } dist)
        {
            if (dist.Length != layout.NumRecursion || dist.Any(p => p < 0 || !double.IsFinite(p)) || dist.Sum() <= 0)
                throw new ArgumentException($"forced depth distribution: needs {layout.NumRecursion} non-negative weights (depths 1..{layout.NumRecursion})");
            if (routing == RoutingKind.None) throw new ArgumentException("forced depth distribution: the model has no router");
        }
        ContextLength = Math.Min(options.ContextLength ?? model.Config.MaxPositionEmbeddings, model.Config.MaxPositionEmbeddings);
        int rows = options.MaxBatch, d = model.Config.HiddenSize;
        cache = model.CreateCache(rows, ContextLength);
        var dtype = core.ComputeType;
        state = torch.zeros(rows, d, dtype: dtype).DetachFromDisposeScope();
        entry = torch.zeros(rows, d, dtype: dtype).DetachFromDisposeScope();
        gates = torch.zeros(rows, dtype: dtype).DetachFromDisposeScope();
        seqs = new Sequence?[rows];
        phase = new Phase[rows];
        recursion = new int[rows];
        depth = new int[rows];
        forcedDepth = new int[rows];
        chosen = new int[rows];
        nextId = new int[rows];
        perDepth = new long[layout.NumRecursion + 1];
        cachedTokens = Enumerable.Range(0, rows).Select(_ => new List<int>()).ToArray();
        forcedRng = new Random(options.ForcedDepthSeed);
        allRows = Enumerable.Range(0, rows).Select(i => (long)i).ToArray();
        model.eval();
        thread = new Thread(Loop) { IsBackground = true, Name = "MoRSharp batching engine" };
        thread.Start();
    }

    public GenerationMetrics Metrics
    {
        get
        {
            int active = phase.Count(p => p != Phase.Free);
            double secs = busy.Elapsed.TotalSeconds;
            long gen = Interlocked.Read(ref tokensGenerated);
            return new GenerationMetrics(gen, Interlocked.Read(ref promptTokens), secs > 0 ? gen / secs : 0,
                (int)Interlocked.Read(ref pendingCount), active, perDepth.ToArray(), Interlocked.Read(ref completed));
        }
    }

    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(IReadOnlyList<int> promptIds, GenerationOptions options,
        [EnumeratorCancellation] CancellationToken cancel = default)
    {
        if (fatal is not null) throw new InvalidOperationException("the batching engine stopped after an error", fatal);
        options.Validate();
        var prompt = GenerationServiceExtensions.FitPrompt(promptIds, options, ContextLength, model.Config.VocabSize);
        if (Interlocked.Increment(ref pendingCount) > this.options.MaxQueue + FreeRows())
        {
            Interlocked.Decrement(ref pendingCount);
            throw new QueueFullException($"the generation queue is full ({this.options.MaxQueue} waiting); retry later");
        }
        var seq = new Sequence
        {
            Prompt = prompt, Options = options, Cancel = cancel, Enqueued = Stopwatch.GetTimestamp(),
            Output = Channel.CreateUnbounded<GeneratedToken>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true }),
        };
        pending.Enqueue(seq);
        wake.Release();
        await foreach (var t in seq.Output.Reader.ReadAllAsync(cancel).ConfigureAwait(false)) yield return t;
    }

    private int FreeRows() => phase.Count(p => p == Phase.Free);

    private void Loop()
    {
        try
        {
            while (!stop.IsCancellationRequested)
            {
                if (Idle())
                {
                    busy.Stop();
                    wake.Wait(stop.Token);
                    continue;
                }
                busy.Start();
                if (PrefillQueued()) Step();   // a prompt to prefill: outside a held team, on libtorch's own threads
                else
                    // Decode work only: the kernel threads stay held across steps until the engine idles or a prompt needs
                    // prefilling. A region per stage cost a team wake-up each: at batch 1, two or three per token.
                    KernelThreads.Hold(() =>
                    {
                        do Step(); while (!stop.IsCancellationRequested && !Idle() && !PrefillQueued());
                    });
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
        catch (Exception e)
        {
            fatal = e;
            for (int i = 0; i < seqs.Length; i++) seqs[i]?.Output.Writer.TryComplete(e);
            while (pending.TryDequeue(out var s)) s.Output.Writer.TryComplete(e);
        }
    }

    private bool Idle() => pending.IsEmpty && phase.All(p => p == Phase.Free);

    /// <summary>A queued request whose prompt has tokens to prefill (all but its last, which enters with the batch).</summary>
    private bool PrefillQueued() => !pending.IsEmpty && pending.Any(s => s.Prompt.Length > 1);

    /// <summary>One engine step: a call of the shared block over every token in a recursion, or the exit + enter stage.</summary>
    private void Step()
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        DropCancelled();
        int inRec = 0, waiting = 0, active = 0;
        for (int i = 0; i < phase.Length; i++)
        {
            if (phase[i] == Phase.Recursion) inRec++;
            else if (phase[i] is Phase.Exit or Phase.Enter) waiting++;
            if (phase[i] != Phase.Free) active++;
        }
        bool freeRowAndWork = !pending.IsEmpty && active < phase.Length;
        if (inRec > 0 && waiting < Math.Max(1, Math.Ceiling(options.ExitBatchFraction * active)) && !(freeRowAndWork && waiting > 0))
            KernelThreads.Hold(RecursionStep);   // decode work only: keep the kernel threads awake for the step
        else
            ExitEnterStep();
    }

    /// <summary>Cancelled sequences end at once; their rows are freed.</summary>
    private void DropCancelled()
    {
        for (int i = 0; i < seqs.Length; i++)
            if (seqs[i] is { } s && s.Cancel.IsCancellationRequested) Release(i, new OperationCanceledException(s.Cancel));
    }

    // ---- admission ------------------------------------------------------------------------------------------------

    /// <summary>
    /// Takes queued requests into free rows. The prompt's tokens but the last are prefilled in one cached forward (they
    /// only write the cache: no head); the last one enters the model with the other sequences' tokens in this step's enter
    /// stage, and the first new token comes out of the exit stage like every later one. A one-token prompt (or a next turn
    /// whose earlier tokens the row already holds) costs no call of its own. Running the whole prompt alone, head included,
    /// took a fifth to a quarter of the engine thread's time at batch 32 with the bench's one-token prompts
    /// (`dotnet-trace`, 135M shape), while the other rows waited.
    /// </summary>
    private void Admit()
    {
        while (!pending.IsEmpty && phase.Any(p => p == Phase.Free))
        {
            if (!pending.TryDequeue(out var seq)) break;
            Interlocked.Decrement(ref pendingCount);
            if (seq.Cancel.IsCancellationRequested) { seq.Output.Writer.TryComplete(new OperationCanceledException(seq.Cancel)); continue; }
            // The free row whose cached tokens are the longest prefix of this prompt (all of them, and fewer than the prompt).
            int row = -1, reuse = -1;
            for (int i = 0; i < phase.Length; i++)
            {
                if (phase[i] != Phase.Free) continue;
                int n = RequestState.ReusablePrefix(cachedTokens[i], seq.Prompt);
                if (n > reuse) (row, reuse) = (i, n);
            }
            var request = seq.Request = new RequestState(seq.Prompt, seq.Options, tokenizer, ContextLength);
            seqs[row] = seq;
            if (reuse > 0 && cache.Position(row) != reuse) reuse = 0;                  // defensive: the row must hold exactly those tokens
            if (reuse == 0) { cache.Reset(row); cachedTokens[row].Clear(); }
            cachedTokens[row].AddRange(seq.Prompt.Skip(reuse));
            Interlocked.Add(ref promptTokens, seq.Prompt.Length);
            Interlocked.Add(ref promptTokensReused, reuse);
            if (seq.Prompt.Length - 1 > reuse)
            {
                using var scope = NewDisposeScope();
                var ids = torch.tensor(seq.Prompt[reuse..^1].Select(i => (long)i).ToArray()).unsqueeze(0);   // [1, T − 1 − reused]
                core.Forward(ids, RoutingMode.Causal, cache: cache, rows: [row], normalize: false);          // fills the cache
            }
            nextId[row] = seq.Prompt[^1];
            phase[row] = Phase.Enter;
        }
    }

    // ---- the exit + enter stage -------------------------------------------------------------------------------------

    private void ExitEnterStep()
    {
        ExitSteps++;
        var exits = Rows(Phase.Exit);
        if (exits.Count > 0) KernelThreads.Hold(() => Exit(exits));
        Admit();   // between the two regions: a prompt's prefill needs libtorch's own threads (Loop holds none while one is queued)
        var enters = Rows(Phase.Enter);
        if (enters.Count > 0) KernelThreads.Hold(() => Enter(enters));
    }

    /// <summary>Tokens that finished their recursions: unique last layers, head, sampling.</summary>
    private void Exit(List<int> exits)
    {
        var members = torch.tensor(exits.Select(r => (long)r).ToArray());
        var h = state.index_select(0, members).unsqueeze(1);                                // [m, 1, d]
        var rope = Rope(exits);
        for (int i = 0; i < layout.Coda.Length; i++)
            h = core.Layers[layout.Coda[i]].Forward(h, Inputs(exits, rope, _ => (cache.Layout.CodaSlot(i), true))).hidden;
        var logits = model.NormHead(h).squeeze(1);                                        // [m, V]
        cache.Advance(exits.Select(r => (long)r).ToArray(), 1);
        // plain greedy rows (the common serving default) share one argmax over the batch instead of a sampler call each
        long[]? argmax = exits.Any(r => seqs[r]!.Request!.Sampler.IsPlainArgmax) ? logits.argmax(-1).data<long>().ToArray() : null;
        for (int k = 0; k < exits.Count; k++)
        {
            int row = exits[k];
            var request = seqs[row]!.Request!;
            int id = request.Sampler.IsPlainArgmax ? (int)argmax![k] : request.Sampler.Next(logits[k], request.History);
            Emit(row, id, depth[row]);
        }
    }

    /// <summary>Tokens that enter the model: embedding, unique first layers, then the router's first decision.</summary>
    private void Enter(List<int> enters)
    {
        var members = torch.tensor(enters.Select(r => (long)r).ToArray());
        var ids = torch.tensor(enters.Select(r => (long)nextId[r]).ToArray()).unsqueeze(1);   // [m, 1]
        var h = core.Embed(ids);                                                             // [m, 1, d]
        var rope = Rope(enters);
        for (int i = 0; i < layout.Prelude.Length; i++)
            h = core.Layers[layout.Prelude[i]].Forward(h, Inputs(enters, rope, _ => (cache.Layout.PreludeSlot(i), true))).hidden;
        var h2 = h.squeeze(1);                                                               // [m, d]
        for (int k = 0; k < enters.Count; k++) { depth[enters[k]] = 0; recursion[enters[k]] = 0; }
        switch (routing)
        {
            case RoutingKind.None:
                state.index_copy_(0, members, h2);
                foreach (int row in enters) phase[row] = layout.Recursions.Length > 0 ? Phase.Recursion : Phase.Exit;
                break;
            case RoutingKind.Expert:
                state.index_copy_(0, members, h2);
                foreach (int row in enters) forcedDepth[row] = DrawForcedDepth();
                DecideExpert(enters, members, h2, 0);
                break;
            case RoutingKind.Token:
                state.index_copy_(0, members, h2);
                entry.index_copy_(0, members, h2);
                var (_, _, expert, gate) = core.TokenRouting!.Choose(h2);                     // [m], [m]
                gates.index_copy_(0, members, gate);
                var picks = expert.data<long>().ToArray();
                for (int k = 0; k < enters.Count; k++)
                {
                    int row = enters[k];
                    int forced = DrawForcedDepth();
                    chosen[row] = forced > 0 ? forced - 1 : (int)picks[k];
                    phase[row] = Phase.Recursion;
                }
                break;
        }
    }

    /// <summary>Expert-choice: whether each token (state h [m, d]) runs recursion r, and its gate there.</summary>
    private void DecideExpert(IReadOnlyList<int> rows, Tensor members, Tensor h, int r)
    {
        var ec = core.ExpertRouting!;
        var (z, gate, zAux) = ec.Score(r, h);                                                    // [m]
        gates.index_copy_(0, members, gate.to_type(gates.dtype));
        var cont = ec.Continues(r, z, zAux).data<bool>().ToArray();
        for (int k = 0; k < rows.Count; k++)
        {
            int row = rows[k];
            bool go = forcedDepth[row] > 0 ? r < forcedDepth[row] : cont[k];
            phase[row] = go ? Phase.Recursion : Phase.Exit;
            recursion[row] = r;
        }
    }

    private int DrawForcedDepth()
    {
        if (options.ForcedDepthDistribution is not { } dist) return 0;
        double u = forcedRng.NextDouble() * dist.Sum(), acc = 0;
        for (int i = 0; i < dist.Length; i++) { acc += dist[i]; if (u < acc) return i + 1; }
        return dist.Length;
    }

    // ---- the recursion stage ----------------------------------------------------------------------------------------

    /// <summary>Every token in some recursion, from every sequence, through one call of the shared block.</summary>
    private void RecursionStep()
    {
        RecursionSteps++;
        var rows = Rows(Phase.Recursion);
        RecursionTokens += rows.Count;
        var members = torch.tensor(rows.Select(r => (long)r).ToArray());
        var x = state.index_select(0, members).unsqueeze(1);                                     // [m, 1, d]
        // The block's unique layers are the same at every recursion; only the cache slots differ per token.
        var block = layout.Recursions[0];
        var rope = Rope(rows);
        for (int j = 0; j < block.Length; j++)
        {
            int jj = j;
            x = core.Layers[block[j]].Forward(x, Inputs(rows, rope, row => cache.Layout.RecursionSlot(recursion[row], jj))).hidden;
        }
        var y = x.squeeze(1);                                                                    // [m, d]
        foreach (int row in rows) depth[row] = recursion[row] + 1;

        switch (routing)
        {
            case RoutingKind.None:
                state.index_copy_(0, members, y);
                foreach (int row in rows)
                {
                    if (recursion[row] + 1 < layout.NumRecursion) recursion[row]++;
                    else phase[row] = Phase.Exit;
                }
                break;
            case RoutingKind.Expert:
            {
                // H ← H + g·f(H) (weighted gating) or H + f(H) (additive), f including the block's residuals.
                var h = state.index_select(0, members);
                var g = gates.index_select(0, members).unsqueeze(-1);
                var updated = model.Config.Recursion.GatingKind == GatingKind.Weighted ? h + g * y : h + y;
                state.index_copy_(0, members, updated);
                foreach (int row in rows)
                    if (recursion[row] + 1 >= layout.NumRecursion) phase[row] = Phase.Exit;
                // the next recursion's router decides, per recursion (each has its own router)
                foreach (var next in rows.Where(r => phase[r] == Phase.Recursion).GroupBy(r => recursion[r] + 1))
                {
                    var group = next.ToList();
                    var groupT = torch.tensor(group.Select(r => (long)r).ToArray());
                    DecideExpert(group, groupT, state.index_select(0, groupT), next.Key);
                }
                break;
            }
            case RoutingKind.Token:
            {
                state.index_copy_(0, members, y);                                               // carried ungated
                var exitNow = rows.Where(r => recursion[r] == chosen[r]).ToList();
                foreach (int row in rows) if (recursion[row] != chosen[row]) recursion[row]++;
                if (exitNow.Count > 0)
                {
                    var e = torch.tensor(exitNow.Select(r => (long)r).ToArray());
                    var outState = entry.index_select(0, e) + gates.index_select(0, e).unsqueeze(-1) * state.index_select(0, e);
                    state.index_copy_(0, e, outState);
                    foreach (int row in exitNow) phase[row] = Phase.Exit;
                }
                break;
            }
        }
    }

    /// <summary>RoPE tables for the tokens of <paramref name="rows"/> (one each, at its next position): [m, 1, 1, hd] each.</summary>
    private (Tensor cos, Tensor sin) Rope(IReadOnlyList<int> rows)
    {
        var positions = torch.tensor(rows.Select(r => cache.Position(r)).ToArray()).unsqueeze(1);   // [m, 1]
        return core.Rope.At(positions, state.dtype);
    }

    /// <summary>AttentionInputs for tokens of <paramref name="rows"/>, grouped by the cache slot each one reads and writes.</summary>
    private AttentionInputs Inputs(IReadOnlyList<int> rows, (Tensor cos, Tensor sin) rope, Func<int, (int slot, bool writes)> slotOf)
    {
        var groups = new List<KvCacheGroup>();
        foreach (var grp in rows.Select((row, k) => (row, k, slot: slotOf(row))).GroupBy(t => t.slot))
        {
            var counts = new long[cache.Rows];
            foreach (var t in grp) counts[t.row] = 1;
            var (slot, writes) = grp.Key;
            // Identity: every row, in row order. The members go on the host only: the decode attention kernel reads them
            // there, and the tensor path (kernels off) builds its index tensors and query positions from them.
            groups.Add(new KvCacheGroup(new KvCacheAccess(cache, slot, allRows, counts, writes, null), null, null)
            {
                Identity = grp.Count() == cache.Rows && grp.All(t => t.row == t.k),
                HostMembers = grp.Select(t => (t.k, t.row, cache.Position(t.row))).ToArray(),
            });
        }
        return new AttentionInputs { Cos = rope.cos, Sin = rope.sin, CacheGroups = groups };
    }

    private List<int> Rows(Phase p)
    {
        var list = new List<int>();
        for (int i = 0; i < phase.Length; i++) if (phase[i] == p) list.Add(i);
        return list;
    }

    // ---- output ----------------------------------------------------------------------------------------------------

    /// <summary>A sampled token for row's sequence: stop checks, streaming text, then either the next enter or the end.</summary>
    private void Emit(int row, int id, int tokenDepth)
    {
        var seq = seqs[row]!;
        var token = seq.Request!.Accept(id, tokenDepth);
        if (token.Id >= 0)
        {
            Interlocked.Increment(ref tokensGenerated);
            Interlocked.Increment(ref perDepth[Math.Min(tokenDepth, perDepth.Length - 1)]);
        }
        seq.Output.Writer.TryWrite(token);
        if (token.Finish is not null) { Release(row, null); return; }
        cachedTokens[row].Add(id);                        // it enters the model next and writes the cache
        nextId[row] = id;
        phase[row] = Phase.Enter;
    }

    private void Release(int row, Exception? error)
    {
        var seq = seqs[row];
        if (seq is null) return;
        seq.Output.Writer.TryComplete(error);
        seq.Request?.Dispose();
        seqs[row] = null;
        phase[row] = Phase.Free;
        // A finished sequence keeps its cache for prefix reuse; an aborted one may have half-written its last token: drop it.
        if (error is not null) { cache.Reset(row); cachedTokens[row].Clear(); }
        Interlocked.Increment(ref completed);
    }

    public void Dispose()
    {
        stop.Cancel();
        wake.Release();
        thread.Join();
        cache.Dispose();
        state.Dispose();
        entry.Dispose();
        gates.Dispose();
        stop.Dispose();
    }
}
