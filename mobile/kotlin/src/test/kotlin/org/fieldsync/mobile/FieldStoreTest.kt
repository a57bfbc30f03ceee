// JUnit tests of the Kotlin bindings on the JVM: the same generated code and the same library
// an Android app loads, against a real fieldsync server on 127.0.0.1 that the Rust test
// (mobile/tests/kotlin.rs) started for them. It passes the server's address, one-time codes of
// workers whose work group has village FIELDSYNC_VILLAGE, and the library's directory.
package org.fieldsync.mobile

import java.nio.file.Files
import java.nio.file.Path
import java.util.Collections
import java.util.concurrent.CountDownLatch
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir

class FieldStoreTest {
    companion object {
        private val server: String = System.getenv("FIELDSYNC_SERVER")
            ?: error("FIELDSYNC_SERVER is not set: run `cargo test -p fieldsync-mobile --test kotlin`")
        private val village: String = System.getenv("FIELDSYNC_VILLAGE") ?: error("FIELDSYNC_VILLAGE")
        private val codes: MutableList<String> =
            Collections.synchronizedList(System.getenv("FIELDSYNC_CODES").orEmpty().split(",").filter { it.isNotBlank() }.toMutableList())

        private fun code(): String = synchronized(codes) {
            check(codes.isNotEmpty()) { "out of enrollment codes: mobile/tests/kotlin.rs issues too few" }
            codes.removeAt(0)
        }
    }

    @TempDir
    lateinit var dir: Path

    private fun interview(note: String) = mapOf(
        "date" to "2026-11-20",
        "interviewer" to "王组长",
        "interviewee_type" to "党员",
        "notes" to note,
    )

    /** A store in the temp dir, enrolled with a fresh code and synced once (templates, villages). */
    private fun enrolled(name: String): FieldStore = runBlocking {
        val store = FieldStore.open(dir.resolve("$name.sqlite3").toString())
        val me = store.enroll(server, code(), "${name}的手机", null)
        assertEquals("worker", me.role)
        assertTrue(village in me.places, "the worker sees its group's village: ${me.places}")
        store.sync(null)
        store
    }

    @Test
    fun twoStoresSeeWhatTheOtherWroteOffline() = runBlocking {
        val a = enrolled("赵")
        val b = enrolled("钱")
        val form = a.forms().first { it.kind == "interview" }
        assertEquals("谈心谈话", form.labelZh)
        assertTrue(form.fields.first { it.name == "interviewee_type" }.choices.any { it.zh == "党员" })

        val note = "群众反映村务公开不及时，希望每月公布一次收支；对书记带头走访困难户评价较好。"
        val id = a.createRecord("interview", village, interview(note))
        assertTrue(a.status().waitingChanges > 0u, "saved offline, waiting to upload")
        val summary = a.sync(null)
        assertTrue(summary.uploaded > 0u)
        assertEquals(0uL, a.status().waitingChanges)
        b.sync(null)
        val seen = b.getRecord(id)
        assertEquals(note, seen.fields.first { it.name == "notes" }.textZh)
        assertEquals("Party member", seen.fields.first { it.name == "interviewee_type" }.textEn)
        // Other tests write to the same server and village: find this one by its words.
        assertEquals(listOf(id), b.listRecords(RecordFilter(kind = "interview", text = "每月公布一次收支")).map { it.id })
        a.close()
        b.close()
    }

    @Test
    fun aFormWithProblemsSavesNothingAndNamesEachField() {
        val a = enrolled("孙")
        val bad = interview("笔记").toMutableMap().apply {
            remove("interviewer")
            put("interviewee_type", "外星人")
        }
        val e = assertThrows<FieldsyncException.InvalidInput> { a.createRecord("interview", village, bad) }
        assertEquals(setOf("interviewee_type"), e.problems.map { it.field }.toSet())
        assertTrue(e.zh.contains("未保存"), e.zh)
        val missing = interview("笔记").toMutableMap().apply { remove("interviewer") }
        val e2 = assertThrows<FieldsyncException.InvalidInput> { a.createRecord("interview", village, missing) }
        assertTrue(e2.problems.any { it.field == "interviewer" && it.code == "required" }, "${e2.problems}")
        assertEquals(0uL, a.status().waitingChanges)
        a.close()
    }

    @Test
    fun aConflictOnBothIsResolvedFromKotlin() = runBlocking {
        val a = enrolled("李")
        val b = enrolled("周")
        val id = a.createRecord("interview", village, interview("关于换届后班子运行情况的谈话。"))
        a.sync(null)
        b.sync(null)
        a.editRecord(id, mapOf("interviewee_type" to "群众代表"))
        b.editRecord(id, mapOf("interviewee_type" to "后备干部"))
        a.sync(null)
        b.sync(null)
        a.sync(null)
        val conflicts = a.recordConflicts(id)
        assertEquals(1, conflicts.size)
        assertEquals(setOf("群众代表", "后备干部"), conflicts[0].values.map { it.textZh }.toSet())
        assertEquals(1, conflicts[0].values.count { it.byThisDevice })
        assertEquals("本机", conflicts[0].values.first { it.byThisDevice }.writtenByZh)
        assertEquals("this device", conflicts[0].values.first { it.byThisDevice }.writtenByEn)
        val pick = conflicts[0].values.indexOfFirst { it.textZh == "后备干部" }
        a.resolveConflict(id, "interviewee_type", pick.toUInt())
        a.sync(null)
        b.sync(null)
        for (s in listOf(a, b)) {
            val r = s.getRecord(id)
            assertEquals(0u, r.conflicts)
            assertEquals("后备干部", r.fields.first { it.name == "interviewee_type" }.textZh)
        }
        val history = b.recordHistory(id)
        assertTrue(history.first().created)
        assertTrue(history.any { h -> h.changes.any { it.field == "interviewee_type" && it.beforeZh == "党员" } })
    }

    @Test
    fun aWrongKeyIsTheWrongKeyErrorNotGarbage() {
        val path = dir.resolve("encrypted.sqlite3").toString()
        val key = ByteArray(32) { (it * 7 + 3).toByte() }
        val store = FieldStore.openEncrypted(path, key)
        val device = store.deviceId()
        store.closeStore()
        assertThrows<FieldsyncException.Storage> { store.status() }
        val wrong = key.copyOf().also { it[0] = (it[0] + 1).toByte() }
        val e = assertThrows<FieldsyncException.WrongKey> { FieldStore.openEncrypted(path, wrong) }
        assertTrue(e.zh.contains("密钥"), e.zh)
        assertThrows<FieldsyncException.InvalidInput> { FieldStore.openEncrypted(path, ByteArray(16)) }
        assertEquals(device, FieldStore.openEncrypted(path, key).deviceId())
        val header = Files.readAllBytes(Path.of(path)).copyOfRange(0, 16)
        assertNotEquals("SQLite format 3\u0000", String(header, Charsets.ISO_8859_1), "the file is encrypted")
    }

    /** Tells every update, and cancels the coroutine's job on the first upload progress. */
    private class Recorder(val onUpload: () -> Unit = {}) : SyncProgress {
        val updates: MutableList<SyncUpdate> = Collections.synchronizedList(mutableListOf())
        override fun onProgress(update: SyncUpdate) {
            updates.add(update)
            if (update.phase == "uploading" && update.done > 0uL) onUpload()
        }
    }

    /** Notes that do not compress into one push batch (2 MiB). */
    private fun note(i: Int): String {
        val words = "书记主任班子成员团结协作村务公开财务监督群众满意发展产业集体经济换届选举后备干部培养谈心谈话问题整改"
        var x = i.toLong() * 2654435761L + 12345L
        return buildString {
            append("第${i}份：")
            repeat(700) {
                x = (x * 6364136223846793005L + 1442695040888963407L)
                append(words[((x ushr 33) % words.length).toInt()])
            }
        }
    }

    @Test
    fun aSyncCancelledMidwayLosesNothingAndResumes() = runBlocking {
        val a = enrolled("吴")
        val b = enrolled("郑")
        val n = 1500
        val tag = "批次" + java.util.UUID.randomUUID().toString().take(8)
        val created = (0 until n).map { i -> a.createRecord("interview", village, interview(tag + note(i))) }
        val waiting = a.status().waitingChanges
        lateinit var job: kotlinx.coroutines.Deferred<SyncSummary>
        val recorder = Recorder { job.cancel() }
        job = async(Dispatchers.IO) { a.sync(recorder) }
        assertThrows<CancellationException> { runBlocking { job.await() } }
        // The sync's thread stops at its next request; wait for it to let go.
        withContext(Dispatchers.IO) {
            val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60)
            while (a.isSyncing() && System.nanoTime() < deadline) Thread.sleep(20)
        }
        val left = a.status().waitingChanges
        assertTrue(left > 0uL && left < waiting, "cancelled midway: $left of $waiting still waiting")

        val progress = Recorder()
        val rest = a.sync(progress)
        assertEquals(left, rest.uploaded, "the rest is sent, not again what was")
        assertEquals(0uL, a.status().waitingChanges)
        val phases = progress.updates.map { it.phase }
        assertEquals("connecting", phases.first())
        assertTrue("uploading" in phases, "$phases")
        val uploads = progress.updates.filter { it.phase == "uploading" }
        assertEquals(uploads.map { it.done }.sorted(), uploads.map { it.done }, "progress only goes forward")
        assertTrue(uploads.last().zh.contains("正在上传"), uploads.last().zh)

        b.sync(null)
        val got = b.listRecords(RecordFilter(kind = "interview", text = tag)).map { it.id }
        assertEquals(n, got.size, "every record once: none lost, none twice")
        assertEquals(created.toSet(), got.toSet())
    }

    @Test
    fun callsFromSeveralThreadsAtOnce() {
        val a = enrolled("王")
        val threads = 4
        val each = 25
        val tag = "线程" + java.util.UUID.randomUUID().toString().take(8)
        val pool = Executors.newFixedThreadPool(threads + 1)
        val start = CountDownLatch(1)
        val errors = Collections.synchronizedList(mutableListOf<Throwable>())
        val writers = (0 until threads).map { t ->
            pool.submit {
                start.await()
                try {
                    repeat(each) { i -> a.createRecord("interview", village, interview("$tag $t 第$i 条")) }
                } catch (e: Throwable) {
                    errors.add(e)
                }
            }
        }
        val reader = pool.submit {
            start.await()
            try {
                repeat(50) {
                    a.status()
                    a.listRecords(RecordFilter(kind = "interview", limit = 10u))
                }
            } catch (e: Throwable) {
                errors.add(e)
            }
        }
        start.countDown()
        writers.forEach { it.get(120, TimeUnit.SECONDS) }
        reader.get(120, TimeUnit.SECONDS)
        pool.shutdown()
        assertEquals(emptyList<Throwable>(), errors)
        val all = a.listRecords(RecordFilter(kind = "interview", text = tag))
        assertEquals(threads * each, all.size)
        assertEquals(threads * each, all.map { it.id }.toSet().size)
        runBlocking { a.sync(null) }
        assertEquals(0uL, a.status().waitingChanges)
    }
}
