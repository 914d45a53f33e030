using System.Text.RegularExpressions;
using MoRSharp.Data;

namespace MoRSharp.Tests.Data;

public class SyntheticCorpusTests
{
    [Fact]
    public void DeterministicForASeed()
    {
        var a = SyntheticCorpus.Documents(7).Take(200).ToList();
        var b = SyntheticCorpus.Documents(7).Take(200).ToList();
        var c = SyntheticCorpus.Documents(8).Take(200).ToList();
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        using var dir = new TempDir();
        SyntheticCorpus.WriteText(dir.File("x.txt"), 30_000, 7);
        SyntheticCorpus.WriteText(dir.File("y.txt"), 30_000, 7);
        var bytes = File.ReadAllBytes(dir.File("x.txt"));
        Assert.Equal(bytes, File.ReadAllBytes(dir.File("y.txt")));
        Assert.InRange(bytes.Length, 30_000, 30_400);
        SyntheticCorpus.WriteText(dir.File("z.txt"), 0, 7);
        Assert.Equal(0, new FileInfo(dir.File("z.txt")).Length);
    }

    [Fact]
    public void LinesAreCorrect()
    {
        var kinds = new HashSet<string>();
        foreach (var doc in SyntheticCorpus.Documents(1).Take(500))
        {
            var lines = doc.Split('\n');
            Assert.InRange(lines.Length, 3, 8);
            foreach (var line in lines)
            {
                Assert.True(line.All(ch => ch is >= ' ' and <= '~'), line);
                Match m;
                if ((m = Regex.Match(line, @"^add (\d+)\+(\d+)=(\d+)$")).Success)
                    Assert.Equal(int.Parse(m.Groups[1].Value) + int.Parse(m.Groups[2].Value), int.Parse(m.Groups[3].Value));
                else if ((m = Regex.Match(line, @"^rev ([a-z]+)>([a-z]+)$")).Success)
                    Assert.Equal(new string(m.Groups[1].Value.Reverse().ToArray()), m.Groups[2].Value);
                else if ((m = Regex.Match(line, @"^copy ([a-z0-9]+)\|([a-z0-9]+)$")).Success)
                    Assert.Equal(m.Groups[1].Value, m.Groups[2].Value);
                else if ((m = Regex.Match(line, @"^cnt ([a-z]+)=(\d+)$")).Success)
                {
                    Assert.Equal(m.Groups[1].Value.Length, int.Parse(m.Groups[2].Value));
                    Assert.Single(m.Groups[1].Value.Distinct());
                }
                else if ((m = Regex.Match(line, @"^max ((?:\d )+\d)=(\d)$")).Success)
                    Assert.Equal(m.Groups[1].Value.Split(' ').Max(int.Parse), int.Parse(m.Groups[2].Value));
                else if ((m = Regex.Match(line, @"^brk ([()\[\]{}]+)=(ok|bad)$")).Success)
                    Assert.Equal(Balanced(m.Groups[1].Value), m.Groups[2].Value == "ok");
                else
                {
                    Assert.Matches(@"^[a-z]+( [a-z]+)+$", line);
                    kinds.Add("words");
                    continue;
                }
                kinds.Add(line[..line.IndexOf(' ')]);
            }
        }
        Assert.Equal(["add", "brk", "cnt", "copy", "max", "rev", "words"], kinds.Order());
    }

    private static bool Balanced(string s)
    {
        var st = new Stack<char>();
        foreach (char c in s)
        {
            if ("([{".Contains(c)) st.Push(c);
            else if (st.Count == 0 || "([{"[")]}".IndexOf(c)] != st.Pop()) return false;
        }
        return st.Count == 0;
    }
}
