// The cost of calls across the boundary from Kotlin: not a test (tagged `bench`, excluded from
// `mvn package`), run (a Test by name, so surefire finds it) by mobile/examples/bench_mobile.rs on a release build, which does the same
// from Rust and the CLI and writes the figures side by side (BENCHMARKS.md).
package org.fieldsync.mobile

import java.nio.file.Files
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Tag
import org.junit.jupiter.api.Test

@Tag("bench")
class BoundaryBenchTest {
    @Test
    fun crossTheBoundary() = runBlocking {
        val server = System.getenv("FIELDSYNC_SERVER")!!
        val village = System.getenv("FIELDSYNC_VILLAGE")!!
        val code = System.getenv("FIELDSYNC_CODES")!!.split(",").first()
        val total = System.getenv("FIELDSYNC_BENCH_RECORDS")!!.toInt()
        val dir = Files.createTempDirectory("fieldsync-bench")
        val store = FieldStore.open(dir.resolve("kotlin.sqlite3").toString())
        store.enroll(server, code, "基准测试", null)
        store.sync(null)
        val note = "村党组织书记带头走访困难群众，班子分工明确，村务监督委员会作用发挥不够，群众希望每月公开一次收支。"
        fun fields(i: Int) = mapOf(
            "date" to "2026-11-20", "interviewer" to "王组长", "interviewee_type" to "党员",
            "notes" to "第${i}份：$note",
        )
        // Warm up the JIT and the library.
        for (i in 0 until 50) store.createRecord("interview", village, fields(i))
        store.listRecords(RecordFilter(kind = "interview", limit = 50u))

        val n = 500
        var t = System.nanoTime()
        for (i in 0 until n) store.createRecord("interview", village, fields(i))
        val createUs = (System.nanoTime() - t) / 1000.0 / n

        val lists = 10
        t = System.nanoTime()
        for (i in 0 until lists) assertEquals(500, store.listRecords(RecordFilter(kind = "interview", limit = 500u)).size)
        val listMs = (System.nanoTime() - t) / 1e6 / lists

        for (i in n + 50 until total) store.createRecord("interview", village, fields(i))
        t = System.nanoTime()
        val summary = store.sync(null)
        val syncS = (System.nanoTime() - t) / 1e9
        assertEquals(0uL, store.status().waitingChanges)
        val line = "BENCH kotlin create_us=%.1f list500_ms=%.1f sync_s=%.2f uploaded=%d".format(
            java.util.Locale.ROOT, createUs, listMs, syncS, summary.uploaded.toLong())
        Files.writeString(java.nio.file.Path.of(System.getenv("FIELDSYNC_BENCH_OUT")!!), line + "\n")
        store.closeStore()
    }
}
