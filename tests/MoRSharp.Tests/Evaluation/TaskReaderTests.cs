using MoRSharp.Data;
using MoRSharp.Evaluation.Tasks;

namespace MoRSharp.Tests.Evaluation;

public class TaskReaderTests : IDisposable
{
    private static readonly string EvalDir = SharedData.Path("eval");
    private readonly string dir = Directory.CreateTempSubdirectory("mor-tasks-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
    }

    [Theory]
    [InlineData("hellaswag", 2000, 4)]
    [InlineData("piqa", 900, 2)]
    [InlineData("arc_easy", 570, 4)]
    [InlineData("arc_challenge", 299, 4)]
    [InlineData("winogrande", 160, 2)]
    [InlineData("lambada", 2000, 1)]
    [InlineData("openbookqa", 4957, 4)]
    public void Every_task_reads_its_shared_file(string name, int count, int usualChoices)
    {
        var task = TaskRegistry.Get(name);
        var items = task.LoadEval(EvalDir);
        Assert.Equal(count, items.Count);
        Assert.All(items, it => it.Validated());
        Assert.True(items.Count(it => it.NumChoices == usualChoices) > count * 0.98);
        if (task.Shots == ShotSource.TrainSplit) Assert.True(task.LoadShotPool(EvalDir)!.Count > 1000);
    }

    [Fact]
    public void Items_are_built_as_the_harness_builds_them()
    {
        var hs = TaskRegistry.Get("hellaswag").LoadEval(EvalDir);
        Assert.Equal("Roof shingle removal: A man is sitting on a roof. he", hs[0].Context(0));
        Assert.Equal("starts pulling up roofing on a roof.", hs[0].Continuation(3));
        Assert.Equal(3, hs[0].Gold);
        // the gold-label counts SOURCES.md states for these 2,000 items
        Assert.Equal(new[] { 521, 469, 521, 489 }, Enumerable.Range(0, 4).Select(k => hs.Count(it => it.Gold == k)).ToArray());

        var piqa = TaskRegistry.Get("piqa").LoadEval(EvalDir);
        Assert.Equal("Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:", piqa[0].Context(0));
        Assert.Equal(0, piqa[0].Gold);
        Assert.Equal(440, piqa.Count(it => it.Gold == 0));

        var arc = TaskRegistry.Get("arc_easy").LoadEval(EvalDir);
        Assert.Equal("Question: Which technology was developed most recently?\nAnswer:", arc[0].Context(0));
        Assert.Equal("cellular telephone", arc[0].Continuation(0));
        Assert.Equal(0, arc[0].Gold);

        var obqa = TaskRegistry.Get("openbookqa").LoadEval(EvalDir);
        Assert.Equal("The sun is responsible for", obqa[0].Context(0));
        Assert.Equal(3, obqa[0].Gold);

        var wg = TaskRegistry.Get("winogrande").LoadEval(EvalDir);
        Assert.Equal("Ian volunteered to eat Dennis's menudo after already having a bowl because Dennis", wg[0].Context(1));
        Assert.Equal("despised eating intestine.", wg[0].Continuation(0));
        Assert.Equal(1, wg[0].Gold);

        var lambada = TaskRegistry.Get("lambada").LoadEval(EvalDir);
        Assert.Equal(" signs", lambada[0].Continuation(0));
        Assert.EndsWith("I don't care about", lambada[0].Context(0));
    }

    private string Write(string name, params string[] lines)
    {
        string path = Path.Combine(dir, name);
        File.WriteAllText(path, string.Join("\n", lines) + "\n");
        return path;
    }

    private static void Fails(Action read, params string[] parts)
    {
        var e = Assert.Throws<DataException>(read);
        foreach (var p in parts) Assert.Contains(p, e.Message);
    }

    [Fact]
    public void Malformed_rows_name_the_file_line_and_field()
    {
        string ok = """{"goal": "g", "sol1": "a", "sol2": "b"}""";
        Write("piqa-labels.lst", "0", "1", "0");
        string path = Write("piqa.jsonl", ok, """{"goal": "g", "sol1": "a"}""", ok);
        Fails(() => PiqaReader.Read(path), "piqa.jsonl:2", "'sol2'", "missing");
        path = Write("piqa.jsonl", ok, ok, """{"goal": "g", "sol1": "a", "sol2": """);
        Fails(() => PiqaReader.Read(path), "piqa.jsonl:3", "not valid JSON");
        path = Write("piqa.jsonl", ok, """{"goal": 5, "sol1": "a", "sol2": "b"}""", ok);
        Fails(() => PiqaReader.Read(path), "piqa.jsonl:2", "'goal'", "expected a string, got a number");

        path = Write("hs.txt", "ctx", "1", "e0", "e1", "e2", "e3", "ctx", "x", "e0", "e1", "e2", "e3");
        Fails(() => HellaSwagReader.Read(path), "hs.txt:8", "'label'", "'x'");
        path = Write("hs.txt", "ctx", "1", "e0", "e1", "e2", "e3", "ctx");
        Fails(() => HellaSwagReader.Read(path), "hs.txt:7", "incomplete item");

        string arc = """{"id": "q1", "question": {"stem": "s", "choices": [{"text": "a", "label": "A"}, {"text": "b", "label": "B"}]}, "answerKey": "C"}""";
        path = Write("arc.jsonl", arc);
        Fails(() => Ai2QuestionReader.Read(path, Ai2QuestionReader.ArcPrompt), "arc.jsonl:1", "'answerKey'", "'C'", "A, B");
        path = Write("arc.jsonl", arc.Replace("\"text\": \"b\"", "\"text\": 2").Replace("\"C\"", "\"A\""));
        Fails(() => Ai2QuestionReader.Read(path, Ai2QuestionReader.ArcPrompt), "arc.jsonl:1", "question.choices[1].text", "got a number");

        Write("wg-labels.lst", "1");
        path = Write("wg.jsonl", """{"sentence": "no blank here", "option1": "a", "option2": "b"}""");
        Fails(() => WinoGrandeReader.Read(path), "wg.jsonl:1", "'sentence'", "blank");
        path = Write("wg.jsonl", """{"sentence": "x _ y", "option1": "a", "option2": "b", "answer": "2"}""");
        Fails(() => WinoGrandeReader.Read(path), "wg.jsonl:1", "'answer'", "wg-labels.lst:1");

        path = Write("lambada.jsonl", """{"text": "oneword"}""");
        Fails(() => LambadaReader.Read(path), "lambada.jsonl:1", "'text'");
        Fails(() => LambadaReader.Read(Path.Combine(dir, "absent.jsonl")), "absent.jsonl", "not found");
    }

    [Fact]
    public void A_missing_labels_file_or_a_wrong_label_count_is_a_clear_error()
    {
        string ok = """{"goal": "g", "sol1": "a", "sol2": "b"}""";
        string path = Write("p.jsonl", ok, ok, ok);
        Fails(() => PiqaReader.Read(path), "p-labels.lst", "labels file not found", "p.jsonl");
        Write("p-labels.lst", "0", "1");
        Fails(() => PiqaReader.Read(path), "p-labels.lst", "2 labels for 3 rows");
        Write("p-labels.lst", "0", "2", "1");
        Fails(() => PiqaReader.Read(path), "p-labels.lst:2", "'2'", "not one of 0, 1");
        Write("p-labels.lst", "0", "1", "1");
        Assert.Equal(new[] { 0, 1, 1 }, PiqaReader.Read(path).Select(it => it.Gold));

        string wg = """{"sentence": "x _ y", "option1": "a", "option2": "b"}""";
        path = Write("w.jsonl", wg, wg);
        Fails(() => WinoGrandeReader.Read(path), "w-labels.lst", "labels file not found");
        Write("w-labels.lst", "1", "2", "1");
        Fails(() => WinoGrandeReader.Read(path), "3 labels for 2 rows");
    }
}
