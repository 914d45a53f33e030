namespace MoRSharp.Evaluation.Tasks;

/// <summary>
/// One task item in lm-evaluation-harness form. Choice i is scored as log p(<see cref="Continuation"/>(i) | <see cref="Context"/>(i)),
/// the two joined by the task's target delimiter. Either the context is shared and each choice is a continuation
/// (HellaSwag, PIQA, ARC, OpenBookQA), or the continuation is shared and each choice is a context (WinoGrande's partial
/// scoring: the sentence up to the blank with each option substituted, then the text after the blank). LAMBADA is one
/// context and one continuation (the last word), <see cref="Gold"/> 0.
/// </summary>
/// <param name="Source">Where the item came from, <c>file:line</c>, for messages.</param>
public sealed record EvalItem(string Id, IReadOnlyList<string> Contexts, IReadOnlyList<string> Continuations, int Gold, string Source)
{
    public int NumChoices => Math.Max(Contexts.Count, Continuations.Count);

    public string Context(int choice) => Contexts.Count == 1 ? Contexts[0] : Contexts[choice];

    public string Continuation(int choice) => Continuations.Count == 1 ? Continuations[0] : Continuations[choice];

    /// <summary>The text that <c>acc_norm</c> divides by: the choice string (the harness' <c>doc_to_choice</c> entry, without the delimiter).</summary>
    public string ChoiceText(int choice) => Continuations.Count > 1 || Contexts.Count == 1 ? Continuation(choice) : Context(choice);

    /// <summary>Checks the shape: 1 or N contexts, 1 or N continuations, N ≥ 1, gold in range.</summary>
    public EvalItem Validated()
    {
        int n = NumChoices;
        if (Contexts.Count == 0 || Continuations.Count == 0 || (Contexts.Count != 1 && Contexts.Count != n) || (Continuations.Count != 1 && Continuations.Count != n))
            throw new ArgumentException($"{Source}: item {Id} has {Contexts.Count} contexts and {Continuations.Count} continuations (expected 1 or N of each)");
        if (Gold < 0 || Gold >= n) throw new ArgumentException($"{Source}: item {Id}: gold index {Gold} is outside 0..{n - 1}");
        return this;
    }
}
