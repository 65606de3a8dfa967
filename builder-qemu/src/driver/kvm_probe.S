# qemu-rs accelerator probe: a 64 KiB firmware image (loaded with -bios) that checks what a Linux
# kernel needs early on. It leaves real mode, enables protected mode, waits for a timer interrupt
# (PIT channel 0 through the 8259 PIC, as early Linux does), then enables PAE paging and long mode
# and reports through QEMU's isa-debug-exit device (port 0xf4):
#   0x2a  everything worked             (QEMU exit status 0x55 = 85)
#   0x11  no timer interrupt arrived    (QEMU exit status 0x23 = 35)
# A broken KVM (real-mode code runs, the kernel hangs) fails this or never reports.
# Build (the test driver::accel::tests::probe_image_matches_source checks the committed .bin):
#   as --32 -o p.o kvm_probe.S && ld -m elf_i386 -Ttext 0 --oformat binary -o kvm_probe.bin p.o
        .intel_syntax noprefix
        .set BASE, 0xf0000              # where the image sits in the low address space
        .set STACK, 0x7000
        .set FLAG, 0x6000               # set to 1 by the timer interrupt handler
        .set IDT, 0x5000
        .code16
        .globl _start
_start:
        cli
        mov ax, 0xf000
        mov ds, ax
        xor ax, ax
        mov ss, ax
        mov sp, STACK
        .byte 0x66
        lgdt [gdt_desc]
        mov eax, cr0
        or eax, 1
        mov cr0, eax
        .byte 0x66, 0xea                # ljmpl 0x08:BASE+pm32
        .long BASE + pm32
        .word 0x08

        .code32
pm32:
        mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov esp, STACK
        mov dword ptr [FLAG], 0
        # IDT in RAM (the firmware region is read-only): 0x21 gates, only 0x20 (IRQ0) set
        mov edi, IDT
        xor eax, eax
        mov ecx, 0x42
        rep stosd
        mov eax, offset irq0
        add eax, BASE
        mov word ptr [IDT + 0x20*8], ax
        mov word ptr [IDT + 0x20*8 + 2], 0x08
        mov word ptr [IDT + 0x20*8 + 4], 0x8e00
        shr eax, 16
        mov word ptr [IDT + 0x20*8 + 6], ax
        lidt [BASE + idt_desc]
        # 8259 PIC: remap master to vectors 0x20.., slave to 0x28.., unmask IRQ0 only
        mov al, 0x11
        out 0x20, al
        out 0xa0, al
        mov al, 0x20
        out 0x21, al
        mov al, 0x28
        out 0xa1, al
        mov al, 0x04
        out 0x21, al
        mov al, 0x02
        out 0xa1, al
        mov al, 0x01
        out 0x21, al
        out 0xa1, al
        mov al, 0xfe
        out 0x21, al
        mov al, 0xff
        out 0xa1, al
        # PIT channel 0, mode 2, divisor 1193 (about 1 kHz)
        mov al, 0x34
        out 0x43, al
        mov al, 0xa9
        out 0x40, al
        mov al, 0x04
        out 0x40, al
        # local APIC: enable it and let the PIC through LINT0 (ExtINT), NMI on LINT1, as firmware does
        mov dword ptr [0xfee000f0], 0x1ff
        mov dword ptr [0xfee00350], 0x700
        mov dword ptr [0xfee00360], 0x400
        sti
        mov ecx, 0x40000000             # bounded wait (the QEMU-side timeout is the real bound)
wait_irq:
        cmp dword ptr [FLAG], 0
        jne got_irq
        pause
        dec ecx
        jnz wait_irq
        cli
        mov al, 0x11
        out 0xf4, al
        hlt
got_irq:
        cli
        # long mode: PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000, one 2 MiB identity page
        mov edi, 0x1000
        xor eax, eax
        mov ecx, 3072
        rep stosd
        mov dword ptr [0x1000], 0x2003
        mov dword ptr [0x2000], 0x3003
        mov dword ptr [0x3000], 0x0083
        mov eax, cr4
        or eax, 0x20
        mov cr4, eax
        mov eax, 0x1000
        mov cr3, eax
        mov ecx, 0xc0000080
        rdmsr
        or eax, 0x100
        wrmsr
        mov eax, cr0
        or eax, 0x80000000
        mov cr0, eax
        .byte 0xea                      # ljmp 0x18:BASE+lm64
        .long BASE + lm64
        .word 0x18

irq0:
        mov dword ptr [FLAG], 1
        push eax
        mov al, 0x20
        out 0x20, al
        pop eax
        iret

        .code64
lm64:
        xor rax, rax
        mov rcx, 1000
1:      add rax, rcx
        loop 1b
        cmp rax, 500500
        jne 2f
        mov al, 0x2a
        out 0xf4, al
2:      hlt
        jmp 2b

        .p2align 3
gdt:
        .quad 0
        .quad 0x00cf9a000000ffff        # 0x08: 32-bit code
        .quad 0x00cf92000000ffff        # 0x10: data
        .quad 0x00af9a000000ffff        # 0x18: 64-bit code
gdt_desc:
        .word gdt_desc - gdt - 1
        .long BASE + gdt
        .p2align 3
idt_desc:
        .word 0x21 * 8 - 1
        .long IDT

        .org 0xfff0                     # reset vector
        .byte 0xea                      # ljmp 0xf000:_start
        .word _start
        .word 0xf000
        .org 0x10000
